/*!
Relative times in recalled messages, resolved against when each message was said.

A message kept in recall storage says "yesterday" or "last week" relative to its own time, not
to the time it is read. Recall results show each message's time, but a small model answers
"When did she buy the figurines?" with "Yesterday." (LoCoMo, session 18: the temporal
questions' most common miss). So a recall result writes the date a relative phrase means
next to it: "I bought them yesterday (21 October 2023)". Only phrases with one clear meaning
are resolved: days ("yesterday", "tomorrow", "two days ago", "last Friday"), and the week,
weekend, month or year before or after. The text itself is never changed, only annotated.
(A prompt line asking the model to do this arithmetic itself lowered every category in
session 13.)
*/

use chrono::{Datelike, Duration, NaiveDate, Weekday};

/// A date as results write it: "21 October 2023".
fn day(d: NaiveDate) -> String {
    d.format("%-d %B %Y").to_string()
}

/// The month `delta` months from `d`'s: "September 2023".
fn month(d: NaiveDate, delta: i32) -> String {
    let m0 = d.year() * 12 + d.month0() as i32 + delta;
    let first = NaiveDate::from_ymd_opt(m0.div_euclid(12), m0.rem_euclid(12) as u32 + 1, 1).unwrap_or(d);
    first.format("%B %Y").to_string()
}

/// Small counts written as words or digits ("two days ago", "3 days ago").
fn count(word: &str) -> Option<i64> {
    const WORDS: [&str; 10] = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"];
    WORDS
        .iter()
        .position(|w| *w == word)
        .map(|i| i as i64 + 1)
        .or_else(|| word.parse().ok().filter(|n| (1..=31).contains(n)))
}

fn weekday(word: &str) -> Option<Weekday> {
    word.parse::<Weekday>().ok().filter(|_| word.len() > 3)
}

/// What the phrase starting at word `i` of `w` (lowercase words) means on `at`, and how many
/// words it takes.
fn resolve(w: &[&str], i: usize, at: NaiveDate) -> Option<(usize, String)> {
    let next = |k: usize| w.get(i + k).copied().unwrap_or("");
    let one_day = Duration::days(1);
    Some(match (w[i], next(1)) {
        ("yesterday", _) => (1, day(at - one_day)),
        ("tomorrow", _) => (1, day(at + one_day)),
        ("today" | "tonight", _) => (1, day(at)),
        ("last" | "next", unit) => {
            let forward = w[i] == "next";
            let text = match unit {
                "night" if !forward => day(at - one_day),
                "week" | "weekend" => format!("the {unit} {} {}", if forward { "after" } else { "before" }, day(at)),
                "month" => month(at, if forward { 1 } else { -1 }),
                "year" => (at.year() + if forward { 1 } else { -1 }).to_string(),
                other => {
                    let target = weekday(other)?;
                    let mut d = at;
                    loop {
                        d = if forward { d + one_day } else { d - one_day };
                        if d.weekday() == target {
                            break day(d);
                        }
                    }
                }
            };
            (2, text)
        }
        (n, "days" | "weeks") if next(2) == "ago" => {
            let n = count(n)?;
            let back = if next(1) == "days" { Duration::days(n) } else { Duration::weeks(n) };
            (3, format!("{}{}", if next(1) == "weeks" { "around " } else { "" }, day(at - back)))
        }
        (n, "months") if next(2) == "ago" => (3, month(at, -(count(n)? as i32))),
        _ => return None,
    })
}

/// `text`, said on `at`, with the date each relative phrase means written after it in
/// parentheses.
pub fn annotate(text: &str, at: NaiveDate) -> String {
    // Words with their byte spans, so the annotation goes right after the phrase.
    let mut spans = vec![];
    let mut start = None;
    for (k, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(k),
            (false, Some(s)) => {
                spans.push((s, k));
                start = None;
            }
            _ => {}
        }
    }
    let lower: Vec<String> = spans.iter().map(|&(s, e)| text[s..e].to_lowercase()).collect();
    let words: Vec<&str> = lower.iter().map(String::as_str).collect();
    let (mut out, mut copied, mut i) = (String::with_capacity(text.len() + 32), 0, 0);
    while i < words.len() {
        match resolve(&words, i, at) {
            Some((n, meaning)) => {
                let end = spans[i + n - 1].1;
                out.push_str(&text[copied..end]);
                out.push_str(&format!(" ({meaning})"));
                copied = end;
                i += n;
            }
            None => i += 1,
        }
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn days_weeks_months_and_years_are_resolved_against_the_messages_date() {
        let at = on(2023, 10, 22); // a Sunday
        assert_eq!(annotate("I bought them yesterday!", at), "I bought them yesterday (21 October 2023)!");
        assert_eq!(annotate("Tomorrow I fly.", at), "Tomorrow (23 October 2023) I fly.");
        assert_eq!(annotate("We went last week", at), "We went last week (the week before 22 October 2023)");
        assert_eq!(annotate("next weekend", at), "next weekend (the weekend after 22 October 2023)");
        assert_eq!(annotate("last month and next year", at), "last month (September 2023) and next year (2024)");
        assert_eq!(
            annotate("two days ago, then 3 weeks ago", at),
            "two days ago (20 October 2023), then 3 weeks ago (around 1 October 2023)"
        );
        assert_eq!(annotate("Last Friday was fun", at), "Last Friday (20 October 2023) was fun");
        assert_eq!(annotate("see you next sunday", at), "see you next sunday (29 October 2023)");
        assert_eq!(annotate("last month", on(2024, 1, 5)), "last month (December 2023)");
        assert_eq!(annotate("two months ago", on(2024, 1, 5)), "two months ago (November 2023)");
    }

    #[test]
    fn other_words_are_left_as_they_are() {
        let at = on(2023, 10, 22);
        for text in ["The last one was great.", "days ago", "many days ago", "Next, the mon ago", "", "héllo wörld 🎉"]
        {
            assert_eq!(annotate(text, at), text);
        }
    }
}
