/*! How rows are stored: typed redb values and the one per-agent range scan.

[`Json<T>`] is a [`redb::Value`] holding a serde record as JSON, so tables are declared with
their record type (`TableDefinition<(u64, u64), Json<Message>>`) and a read gives a record, not
bytes. The bytes are exactly those of the byte-slice tables of schema 1 and the type keeps
their type name, so a store written before typed tables opens unchanged.

A row that does not decode (a damaged or hand-edited database) is not a panic: redb's
`from_bytes` cannot fail, so it yields [`Row::Corrupt`], and [`Row::decode`] turns that into
[`Error::Corrupt`] naming the table.

[`scan`] is the one range scan over an agent's rows: keys put the agent id first
([`AgentKey`]), so an agent's rows are the contiguous range from its lowest key to the next
agent's.
*/

use crate::{Error, Result};
use redb::{Key, ReadableTable, TypeName, Value};
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;
use std::marker::PhantomData;

/// A serde record stored as JSON bytes.
#[derive(Debug)]
pub struct Json<T>(PhantomData<T>);

/// A value of a [`Json<T>`] column: a record to write (borrowed), or one read back.
#[derive(Debug)]
pub enum Row<'a, T> {
    /// A record to write, without copying it.
    Ref(&'a T),
    /// A record read back.
    Owned(T),
    /// Stored bytes that are not a valid record: the parse error.
    Corrupt(String),
}

impl<T: Clone> Row<'_, T> {
    /// The record, or [`Error::Corrupt`] naming `table`.
    pub fn decode(self, table: &str) -> Result<T> {
        match self {
            Row::Ref(t) => Ok(t.clone()),
            Row::Owned(t) => Ok(t),
            Row::Corrupt(msg) => Err(Error::Corrupt { table: table.to_string(), msg }),
        }
    }
}

impl<T> Value for Json<T>
where
    T: Serialize + DeserializeOwned + Debug,
{
    type SelfType<'a>
        = Row<'a, T>
    where
        Self: 'a;
    type AsBytes<'a>
        = Vec<u8>
    where
        Self: 'a;

    fn fixed_width() -> Option<usize> {
        None
    }

    fn from_bytes<'a>(data: &'a [u8]) -> Row<'a, T>
    where
        Self: 'a,
    {
        match serde_json::from_slice(data) {
            Ok(t) => Row::Owned(t),
            Err(e) => Row::Corrupt(e.to_string()),
        }
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a Row<'b, T>) -> Vec<u8>
    where
        Self: 'b,
    {
        let r = match value {
            Row::Ref(t) => serde_json::to_vec(t),
            Row::Owned(t) => serde_json::to_vec(t),
            // Never written: `decode` refuses it first. Kept as an empty (corrupt) value.
            Row::Corrupt(_) => Ok(vec![]),
        };
        // The records are plain structs of strings, numbers and JSON values: serde_json cannot
        // fail on them (it fails only on non-string map keys and custom serializers).
        r.expect("pagemind records always serialize")
    }

    fn type_name() -> TypeName {
        // The byte-slice type name of schema 1: same bytes, same tables.
        <&[u8] as Value>::type_name()
    }
}

/// A key whose first part is the agent id.
pub trait AgentKey: Key + 'static {
    /// The smallest key of `agent`.
    fn lowest(agent: u64) -> Self::SelfType<'static>;
}

impl AgentKey for (u64, u64) {
    fn lowest(agent: u64) -> (u64, u64) {
        (agent, 0)
    }
}

impl AgentKey for (u64, &'static str) {
    fn lowest(agent: u64) -> (u64, &'static str) {
        (agent, "")
    }
}

impl AgentKey for (u64, &'static [u8]) {
    fn lowest(agent: u64) -> (u64, &'static [u8]) {
        (agent, &[])
    }
}

/// Call `f` on every row of `agent` in key order; `f` returns `false` to stop.
pub fn scan<K, V, Tbl>(
    t: &Tbl,
    agent: u64,
    mut f: impl FnMut(K::SelfType<'_>, V::SelfType<'_>) -> Result<bool>,
) -> Result<()>
where
    K: AgentKey,
    V: Value + 'static,
    Tbl: ReadableTable<K, V>,
{
    let range = K::lowest(agent)..K::lowest(agent.saturating_add(1));
    for row in t.range(range)? {
        let (k, v) = row?;
        if !f(k.value(), v.value())? {
            break;
        }
    }
    Ok(())
}

/// The largest id of `agent` in an `(agent, id)` table, 0 if it has no row.
pub fn last_id<V, Tbl>(t: &Tbl, agent: u64) -> Result<u64>
where
    V: Value + 'static,
    Tbl: ReadableTable<(u64, u64), V>,
{
    match t.range((agent, 0)..=(agent, u64::MAX))?.next_back() {
        Some(row) => Ok(row?.0.value().1),
        None => Ok(0),
    }
}

/// Every record of `agent` in a `Json<T>` table, in key order.
pub fn records<K, T, Tbl>(t: &Tbl, agent: u64, table: &str) -> Result<Vec<T>>
where
    K: AgentKey,
    T: Serialize + DeserializeOwned + Debug + Clone + 'static,
    Tbl: ReadableTable<K, Json<T>>,
{
    let mut out = vec![];
    scan(t, agent, |_, v: Row<'_, T>| {
        out.push(v.decode(table)?);
        Ok(true)
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, TableDefinition};

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Rec {
        n: u64,
        s: String,
    }

    const TYPED: TableDefinition<(u64, u64), Json<Rec>> = TableDefinition::new("t");
    const BYTES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("t");

    #[test]
    fn typed_rows_read_back_scan_one_agent_and_report_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("db")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(TYPED).unwrap();
            for (a, i) in [(1, 1), (1, 2), (2, 1), (3, 7)] {
                t.insert((a, i), Row::Ref(&Rec { n: a * 10 + i, s: format!("{a}/{i}") })).unwrap();
            }
        }
        tx.commit().unwrap();
        let tx = db.begin_read().unwrap();
        let t = tx.open_table(TYPED).unwrap();
        let got: Vec<Rec> = records(&t, 1, "t").unwrap();
        assert_eq!(got.iter().map(|r| r.n).collect::<Vec<_>>(), [11, 12]);
        assert_eq!(records(&t, 3, "t").unwrap(), [Rec { n: 37, s: "3/7".into() }]);
        assert!(records(&t, 4, "t").unwrap().is_empty());
        drop((t, tx));

        // The same table opened as bytes (schema 1's declaration) holds the same JSON.
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(BYTES).unwrap();
            assert_eq!(t.get((2, 1)).unwrap().unwrap().value(), br#"{"n":21,"s":"2/1"}"#);
            t.insert((2, 2), b"{not json".as_slice()).unwrap();
        }
        tx.commit().unwrap();
        let tx = db.begin_read().unwrap();
        let t = tx.open_table(TYPED).unwrap();
        let e = records(&t, 2, "t").unwrap_err();
        assert!(matches!(&e, Error::Corrupt { table, .. } if table == "t"), "{e}");
    }
}
