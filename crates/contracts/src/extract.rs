//! Extraction of key terms: dates, term and renewal, notice periods, money, governing law.

use std::sync::LazyLock;

use regex::Regex;

use crate::rules::{compile, rule, NUMBER};
use crate::text::{regex_or_never, sentences};
use crate::types::{ClauseType, Document, Facts, Money};

/// Extracts the key terms of a document.
pub(crate) fn facts(doc: &Document) -> Facts {
    let sentences: Vec<&str> = sentences(&doc.text).into_iter().map(|(s, e)| &doc.text[s..e]).collect();
    let shows = |clause: ClauseType, sentence: &str| rule(clause).is_some_and(|r| r.matches(sentence));

    let renewal: Vec<&str> = sentences.iter().copied().filter(|s| shows(ClauseType::AutoRenewal, s)).collect();
    let renewal_notice_days = renewal.iter().find_map(|s| notice_days(s));
    let termination_notice_days =
        sentences.iter().filter(|s| shows(ClauseType::TerminationForConvenience, s)).find_map(|s| notice_days(s));
    let governing_law = sentences.iter().filter(|s| shows(ClauseType::GoverningLaw, s)).find_map(|s| jurisdiction(s));
    let liability_cap = sentences
        .iter()
        .filter(|s| shows(ClauseType::LimitationOfLiability, s) && CAP_WORDS.is_match(s))
        .find_map(|s| money(s).into_iter().next());
    let mut amounts: Vec<Money> = Vec::new();
    for found in money(&doc.text) {
        if !amounts.contains(&found) {
            amounts.push(found);
        }
    }
    let effective = effective_date(&doc.text, &sentences);
    let term = sentences.iter().find_map(|s| term_months(s));
    let expiration = sentences
        .iter()
        .filter(|s| EXPIRES.is_match(s))
        .find_map(|s| dates(s).into_iter().find(|d| Some(d) != effective.as_ref()))
        .or_else(|| add_months(effective.as_deref()?, term?));
    Facts {
        effective_date: effective,
        term_months: term,
        expiration_date: expiration,
        auto_renewal: !renewal.is_empty(),
        renewal_notice_days,
        termination_notice_days,
        governing_law,
        liability_cap,
        amounts,
    }
}

static EXPIRES: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"\b(?:expir\w*|terminat\w*|end|continue\w*|remain\w*\s+in\s+(?:full\s+)?(?:force|effect))\s+(?:on|until|through)\b")
        .unwrap_or_else(|_| never())
});

/// `iso` (YYYY-MM-DD) plus `months`, the day clamped to the month's length.
fn add_months(iso: &str, months: u32) -> Option<String> {
    let mut parts = iso.split('-').map(|p| p.parse::<u32>().ok());
    let (year, month, day) = (parts.next()??, parts.next()??, parts.next()??);
    let total = year * 12 + (month - 1) + months;
    let (year, month) = (total / 12, total % 12 + 1);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let length = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    Some(format!("{year:04}-{month:02}-{:02}", day.min(length)))
}

static CAP_WORDS: LazyLock<Regex> =
    LazyLock::new(|| compile(r"exceed|limited\s+to|cap\b|capped|maximum|aggregate").unwrap_or_else(|_| never()));

fn never() -> Regex {
    regex_or_never(r"[^\s\S]")
}

/// A number written as digits or words ("thirty (30)" reads as 30).
pub(crate) fn number(word: &str) -> Option<u32> {
    let word = word.trim().to_lowercase();
    if let Ok(n) = word.parse() {
        return Some(n);
    }
    Some(match word.as_str() {
        "one" => 1,
        "two" => 2,
        "three" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        "fifteen" => 15,
        "eighteen" => 18,
        "twenty" => 20,
        "twenty-four" => 24,
        "thirty" => 30,
        "thirty-six" => 36,
        "forty-five" => 45,
        "sixty" => 60,
        "ninety" => 90,
        "one hundred twenty" | "one hundred and twenty" => 120,
        "one hundred eighty" | "one hundred and eighty" => 180,
        _ => return None,
    })
}

/// A period: its count and unit ("day", "month", "year").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Period {
    pub(crate) count: u32,
    pub(crate) unit: Unit,
}

/// The unit of a [`Period`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    /// The period in months, rounding days down.
    pub(crate) fn months(self) -> u32 {
        match self.unit {
            Unit::Day => self.count / 30,
            Unit::Week => self.count / 4,
            Unit::Month => self.count,
            Unit::Year => self.count * 12,
        }
    }

    /// The period in days (months as 30 days).
    pub(crate) fn days(self) -> u32 {
        match self.unit {
            Unit::Day => self.count,
            Unit::Week => self.count * 7,
            Unit::Month => self.count * 30,
            Unit::Year => self.count * 365,
        }
    }
}

static PERIOD: LazyLock<Regex> = LazyLock::new(|| {
    compile(&format!(
        r"\b({NUMBER})(?:\s*\((\d+)\))?\s*(?:-\s*)?(?:full\s+|calendar\s+|business\s+|working\s+|consecutive\s+)?(days?|weeks?|months?|years?)\b"
    ))
    .unwrap_or_else(|_| never())
});

/// Every period in a sentence, in order.
pub(crate) fn periods(sentence: &str) -> Vec<Period> {
    PERIOD
        .captures_iter(sentence)
        .filter_map(|caps| {
            let count = caps.get(2).and_then(|d| number(d.as_str())).or_else(|| number(caps.get(1)?.as_str()))?;
            let unit = match caps.get(3)?.as_str().to_lowercase().trim_end_matches('s') {
                "day" => Unit::Day,
                "week" => Unit::Week,
                "month" => Unit::Month,
                _ => Unit::Year,
            };
            Some(Period { count, unit })
        })
        .collect()
}

/// The notice a sentence asks for, in days: the period next to "notice" or "prior to".
fn notice_days(sentence: &str) -> Option<u32> {
    let lower = sentence.to_lowercase();
    if !(lower.contains("notice") || lower.contains("prior to") || lower.contains("before")) {
        return None;
    }
    periods(sentence).into_iter().find(|p| matches!(p.unit, Unit::Day | Unit::Week)).map(|p| p.days()).or_else(|| {
        // "at least three months before expiry"
        NOTICE_MONTHS.is_match(sentence).then(|| periods(sentence).last().map(|p| p.days())).flatten()
    })
}

static NOTICE_MONTHS: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"(?:months?'?|years?'?)\s*(?:prior\s+|advance\s+)?(?:written\s+)?notice|months?\s+(?:prior\s+to|before)")
        .unwrap_or_else(|_| never())
});

static TERM_SENTENCE: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"\b(?:initial\s+term|term\s+of\s+(?:this|the)\s+(?:agreement|lease|licen[cs]e|engagement)|this\s+(?:agreement|lease)\s+(?:shall|will)\s+(?:commence|continue|remain|be\s+in\s+effect|expire|end)|(?:shall|will)\s+(?:continue|remain)\s+in\s+(?:full\s+)?(?:force|effect)|\bterm\b[^.]{0,40}\b(?:commenc|begin|start)\w*|\bterm\s+(?:is|shall\s+be|will\s+be)\b|for\s+a\s+(?:fixed\s+)?(?:term|period)\s+of|\b(?:agreement|lease)\s+(?:begins|commences|takes\s+effect|enters\s+into\s+force)\b|\bcontinues?\s+for\b|\bends\s+[^.]{0,40}\bafter\s+the\s+effective\s+date)")
        .unwrap_or_else(|_| never())
});

static NOT_TERM: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"confidential|non-?compet|solicit|warrant|surviv|after\s+(?:its\s+|the\s+|such\s+)?(?:termination|expiration|expiry)|renewal\s+term|successive|probation|compet|during\s+the\s+term")
        .unwrap_or_else(|_| never())
});

/// The initial term in months, from a sentence that states the term.
fn term_months(sentence: &str) -> Option<u32> {
    if !TERM_SENTENCE.is_match(sentence) || NOT_TERM.is_match(sentence) {
        return None;
    }
    periods(sentence).into_iter().find(|p| matches!(p.unit, Unit::Month | Unit::Year)).map(Period::months)
}

const MONTHS: &str = "january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec";

static DATE: LazyLock<Regex> = LazyLock::new(|| {
    compile(&format!(
        r"\b(?:({MONTHS})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})|(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:day\s+of\s+)?({MONTHS})\.?,?\s+(\d{{4}})|(\d{{4}})-(\d{{2}})-(\d{{2}})|(\d{{1,2}})/(\d{{1,2}})/(\d{{4}}))\b"
    ))
    .unwrap_or_else(|_| never())
});

fn month_number(name: &str) -> Option<u32> {
    let name = name.to_lowercase();
    let short = name.get(..3)?;
    let index = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        .iter()
        .position(|m| *m == short)?;
    Some(index as u32 + 1)
}

/// Every date in a text, as ISO 8601, in order (US order for slashed dates).
pub(crate) fn dates(text: &str) -> Vec<String> {
    DATE.captures_iter(text)
        .filter_map(|caps| {
            let get = |i: usize| caps.get(i).map(|m| m.as_str());
            let (year, month, day) = if let (Some(m), Some(d), Some(y)) = (get(1), get(2), get(3)) {
                (y.parse().ok()?, month_number(m)?, d.parse().ok()?)
            } else if let (Some(d), Some(m), Some(y)) = (get(4), get(5), get(6)) {
                (y.parse().ok()?, month_number(m)?, d.parse().ok()?)
            } else if let (Some(y), Some(m), Some(d)) = (get(7), get(8), get(9)) {
                (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
            } else {
                (get(12)?.parse().ok()?, get(10)?.parse().ok()?, get(11)?.parse().ok()?)
            };
            let (year, month, day): (u32, u32, u32) = (year, month, day);
            ((1900..=2200).contains(&year) && (1..=12).contains(&month) && (1..=31).contains(&day))
                .then(|| format!("{year:04}-{month:02}-{day:02}"))
        })
        .collect()
}

static EFFECTIVE: LazyLock<Regex> = LazyLock::new(|| {
    compile(r#"effective\s+(?:as\s+of|on|from)|"?effective\s+date"?|commencement\s+date|dated\s+(?:as\s+of|this)|entered\s+into\s+(?:as\s+of|on|this)|made\s+(?:as\s+of|on|this)|commenc\w+\s+on|start\s+date"#)
        .unwrap_or_else(|_| never())
});

/// The effective date: the first date in a sentence that speaks of taking effect,
/// else the first date of the preamble.
fn effective_date(text: &str, sentences: &[&str]) -> Option<String> {
    sentences
        .iter()
        .filter(|s| EFFECTIVE.is_match(s))
        .find_map(|s| dates(s).into_iter().next())
        .or_else(|| dates(&text.chars().take(1500).collect::<String>()).into_iter().next())
}

static MONEY: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"(?:\b(USD|EUR|GBP|CAD|AUD|CHF|JPY|US\$|C\$|A\$)|(\$|€|£))\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?(?:\s*(million|billion|thousand)\b)?|\b(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?\s*(?:(million|billion|thousand)\s+)?(USD|EUR|GBP|CAD|AUD|CHF|(?:US\s+)?dollars|euros?|pounds\s+sterling)\b")
        .unwrap_or_else(|_| never())
});

fn currency_code(symbol: &str) -> Option<&'static str> {
    Some(match symbol.to_lowercase().as_str() {
        "usd" | "us$" | "$" | "dollars" | "us dollars" => "USD",
        "eur" | "€" | "euro" | "euros" => "EUR",
        "gbp" | "£" | "pounds sterling" => "GBP",
        "cad" | "c$" => "CAD",
        "aud" | "a$" => "AUD",
        "chf" => "CHF",
        "jpy" => "JPY",
        _ => return None,
    })
}

/// Every monetary amount in a text, in order.
pub(crate) fn money(text: &str) -> Vec<Money> {
    MONEY
        .captures_iter(text)
        .filter_map(|caps| {
            let get = |i: usize| caps.get(i).map(|m| m.as_str());
            let (symbol, whole, cents, scale) = match get(3) {
                Some(whole) => (get(1).or(get(2))?, whole, get(4), get(5)),
                None => (get(9)?, get(6)?, get(7), get(8)),
            };
            let currency = currency_code(symbol)?;
            let whole: f64 = whole.replace(',', "").parse().ok()?;
            let cents: f64 = cents.map_or(Ok(0.0), |c| format!("0.{c}").parse()).ok()?;
            let scale = match scale.map(str::to_lowercase).as_deref() {
                Some("thousand") => 1e3,
                Some("million") => 1e6,
                Some("billion") => 1e9,
                _ => 1.0,
            };
            Some(Money { currency: currency.to_owned(), amount: (whole + cents) * scale })
        })
        .collect()
}

static JURISDICTION: LazyLock<Regex> = LazyLock::new(|| {
    regex_or_never(
        r"(?i:\blaws?\s+(?:of|in\s+force\s+in|prevailing\s+in)\s+)(?:(?i:the)\s+)?(?:(?i:state|commonwealth|province|federal\s+republic|republic|kingdom|grand\s+duchy|canton)\s+(?i:of)\s+)?([A-Z][A-Za-z.-]+(?:\s+(?:and\s+|of\s+)?[A-Z][A-Za-z.-]+){0,3})",
    )
});

/// The jurisdiction whose law governs, from a governing-law sentence.
fn jurisdiction(sentence: &str) -> Option<String> {
    JURISDICTION
        .captures_iter(sentence)
        .find_map(|caps| {
            let name = caps.get(1)?.as_str().trim_end_matches('.');
            let name = name.strip_suffix(" and").unwrap_or(name);
            (!matches!(name, "This" | "Agreement" | "Any" | "Such")).then(|| name.to_owned())
        })
        .or_else(|| {
            // "Texas law governs this Agreement."
            let caps = LAW_GOVERNS.captures(sentence)?;
            Some(caps.get(1)?.as_str().to_owned())
        })
        .or_else(|| {
            // "the laws, other than choice of law rules, of the state of Florida"
            let caps = STATE_OF.captures(sentence)?;
            Some(caps.get(1)?.as_str().trim_end_matches('.').to_owned())
        })
}

static STATE_OF: LazyLock<Regex> = LazyLock::new(|| {
    regex_or_never(
        r"(?i:\b(?:state|commonwealth|province|republic|kingdom)\s+of\s+)([A-Z][A-Za-z.-]+(?:\s+[A-Z][A-Za-z.-]+){0,2})",
    )
});

static LAW_GOVERNS: LazyLock<Regex> = LazyLock::new(|| {
    regex_or_never(r"\b([A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)\s+(?i:law)\s+(?i:(?:shall\s+|will\s+)?governs?)\b")
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_words_digits_and_hyphens() {
        let got = periods("thirty (30) days' notice, a 12-month term, two years and ninety days");
        let want = [(30, Unit::Day), (12, Unit::Month), (2, Unit::Year), (90, Unit::Day)];
        assert_eq!(got, want.map(|(count, unit)| Period { count, unit }));
    }

    #[test]
    fn months_are_added_to_dates() {
        assert_eq!(add_months("1998-06-01", 12).as_deref(), Some("1999-06-01"));
        assert_eq!(add_months("2025-01-31", 1).as_deref(), Some("2025-02-28"));
        assert_eq!(add_months("2023-11-15", 3).as_deref(), Some("2024-02-15"));
    }

    #[test]
    fn dates_in_every_usual_format() {
        let got = dates("March 3, 2025; 1st day of June, 2024; 2025-07-01; 12/31/2026; 5 Sept. 2025");
        assert_eq!(got, ["2025-03-03", "2024-06-01", "2025-07-01", "2026-12-31", "2025-09-05"]);
    }

    #[test]
    fn money_in_symbols_codes_and_words() {
        let got = money("USD 48,000, $1.5 million, €8,500.50, £12,500, 2,000 euros and 1.5% per month");
        let want = [("USD", 48_000.0), ("USD", 1_500_000.0), ("EUR", 8_500.5), ("GBP", 12_500.0), ("EUR", 2_000.0)];
        assert_eq!(got, want.map(|(c, amount)| Money { currency: c.to_owned(), amount }));
    }

    #[test]
    fn jurisdiction_is_the_place_only() {
        for (sentence, want) in [
            (
                "This Agreement is governed by the laws of the State of New York, without regard to conflicts.",
                "New York",
            ),
            ("governed by the laws of England and Wales.", "England and Wales"),
            ("The laws of the Federal Republic of Germany apply.", "Germany"),
            ("construed under the laws of the Province of Ontario and the federal laws of Canada", "Ontario"),
            ("Texas law governs this Agreement.", "Texas"),
            ("governed by the laws, other than choice of law rules, of the state of Florida.", "Florida"),
        ] {
            assert_eq!(jurisdiction(sentence).as_deref(), Some(want), "{sentence}");
        }
    }
}
