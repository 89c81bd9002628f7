/*! Upgrades of stores written by older pagemind versions, run on open.

Each step rewrites what changed between two schema versions inside the transaction that checks
the version, so a store is either fully upgraded or untouched. A store from a newer version is
refused (see `MemoryStore::open`).

- 1 -> 2: sources were keyed by the path's text (`sources`, a lossy conversion for names that
  are not UTF-8); they are now keyed by the raw path bytes (`sources_by_path`). A schema-1 key was
  the record's path text, so each record moves to the key [`Source::key`] gives it.
*/

use super::codec::{Json, Row};
use super::sources::Source;
use super::tables::SOURCES;
use crate::Result;
use redb::TableHandle;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

/// Schema 1's sources table.
const V1_SOURCES: TableDefinition<(u64, &str), Json<Source>> = TableDefinition::new("sources");

/// Bring a store of schema `from` to the current schema, inside `tx`.
pub(super) fn migrate(tx: &WriteTransaction, from: u64) -> Result<()> {
    if from < 2 {
        sources_by_raw_path(tx)?;
    }
    Ok(())
}

fn sources_by_raw_path(tx: &WriteTransaction) -> Result<()> {
    let mut rows = vec![];
    {
        let old = tx.open_table(V1_SOURCES)?;
        for row in old.iter()? {
            let (k, v) = row?;
            rows.push((k.value().0, v.value().decode(V1_SOURCES.name())?));
        }
    }
    let mut new = tx.open_table(SOURCES)?;
    for (agent, s) in &rows {
        new.insert((*agent, s.key()), Row::Ref(s))?;
    }
    drop(new);
    tx.delete_table(V1_SOURCES)?;
    Ok(())
}
