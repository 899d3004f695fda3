//! Ingestion: normalising contract text, finding its title, kind and parties, and
//! splitting it into sections and sentences (with byte offsets into the normalised text).

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use crate::rules::KIND_RULES;
use crate::types::{ContractKind, Document, Section};

/// Normalises, then splits `raw` into a [`Document`].
pub(crate) fn ingest(raw: &str) -> Document {
    let text = normalise(raw);
    let title = title(&text);
    let kind = kind(&title, &text);
    let parties = parties(&text);
    let sections = sections(&text);
    Document { text, title, kind, parties, sections }
}

/// Folds typographic characters to ASCII, tidies whitespace and Markdown emphasis.
pub(crate) fn normalise(raw: &str) -> String {
    let mut folded = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '\r' | '\u{0c}' | '\u{2028}' | '\u{2029}' => folded.push('\n'),
            '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{2032}' => folded.push('\''),
            '\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{2033}' => folded.push('"'),
            '\u{2010}'..='\u{2015}' | '\u{2212}' => folded.push('-'),
            '\t' | '\u{a0}' | '\u{2000}'..='\u{200a}' | '\u{202f}' | '\u{3000}' => folded.push(' '),
            '\u{200b}' | '\u{feff}' | '\u{ad}' => {}
            c if c.is_control() && c != '\n' => folded.push(' '),
            c => folded.push(c),
        }
    }
    let folded = folded.replace("**", "").replace("__", "");
    let lines: Vec<String> = folded.split('\n').map(|l| collapse_spaces(l.trim_end())).collect();
    // Running headers and footers of a PDF conversion: page numbers, "Source: ..."
    // lines, and any short line repeated on three or more pages.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for line in &lines {
        *seen.entry(line.trim()).or_default() += 1;
    }
    let is_furniture = |line: &str| {
        let t = line.trim();
        !t.is_empty() && (PAGE_FURNITURE.is_match(t) || (seen.get(t).copied().unwrap_or(0) >= 3 && t.len() <= 400))
    };
    let mut out = String::with_capacity(folded.len());
    let mut blank_run = 0;
    let mut dropped = false;
    for line in &lines {
        if is_furniture(line) {
            dropped = true;
            continue;
        }
        if line.trim().is_empty() {
            blank_run += 1;
            continue;
        }
        let body = out.trim_end();
        // A page break inside a sentence ("... the\n\n13\n\nmaterial respects ..."), or a
        // word hyphenated across lines: join the pieces again.
        let continues_here = !body.is_empty() && continues(body) && line.trim_start().starts_with(char::is_lowercase);
        if body.ends_with('-')
            && body[..body.len() - 1].ends_with(char::is_alphabetic)
            && line.trim_start().starts_with(char::is_lowercase)
            && blank_run == 0
        {
            out.truncate(body.len() - 1);
            out.push_str(line.trim_start());
        } else if dropped && continues_here {
            out.truncate(body.len());
            out.push('\n');
            out.push_str(line);
        } else {
            if blank_run > 0 && !out.is_empty() {
                out.truncate(body.len());
                out.push_str("\n\n");
            }
            out.push_str(line);
        }
        out.push('\n');
        blank_run = 0;
        dropped = false;
    }
    out.truncate(out.trim_end().len());
    out
}

static PAGE_FURNITURE: LazyLock<Regex> =
    LazyLock::new(|| regex_or_never(r"^(?i:-?\s*\d{1,3}\s*-?|page\s+\d+(?:\s+of\s+\d+)?|\d+\s+of\s+\d+|source:\s.*)$"));

fn collapse_spaces(line: &str) -> String {
    let indent = line.len() - line.trim_start().len();
    let mut out = String::with_capacity(line.len());
    out.push_str(&line[..indent.min(4)]);
    let mut last_space = false;
    for c in line.trim_start().chars() {
        if c == ' ' {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    out
}

/// The first line that reads as a title.
fn title(text: &str) -> String {
    text.lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .find(|l| l.chars().any(char::is_alphabetic) && !l.chars().all(|c| c == '-' || c == '=' || c == '*'))
        .map(|l| truncate_chars(l, 160))
        .unwrap_or_default()
}

fn truncate_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn kind(title: &str, text: &str) -> ContractKind {
    let title = title.to_lowercase();
    let opening = text.chars().take(1500).collect::<String>().to_lowercase();
    for haystack in [&title, &opening] {
        for (kind, words) in KIND_RULES {
            if words.iter().any(|w| haystack.contains(w)) {
                return *kind;
            }
        }
    }
    ContractKind::Other
}

static BETWEEN: LazyLock<Regex> = LazyLock::new(|| regex_or_never(r"(?i)\b(?:by and )?between\s*:?\s+"));
static PARTY_END: LazyLock<Regex> = LazyLock::new(|| {
    regex_or_never(
        r#"(?i)\s*(?:\(|,\s*(?:an?|the)\s|,\s*(?:having|whose|with|incorporated|organi[sz]ed|located|residing|registered)\b|\s+and\s|;|\n|,?\s*hereinafter)"#,
    )
});
static SECOND_PARTY: LazyLock<Regex> =
    LazyLock::new(|| regex_or_never(r"(?i)(?:\)|\n)\s*[,;]?\s*(?:and\s+)?(?:\(\d\)\s*)?"));

/// The two parties named in the preamble ("between X, a ... ("Client"), and Y").
fn parties(text: &str) -> Vec<String> {
    let head: String = text.chars().take(4000).collect();
    let Some(found) = BETWEEN.find(&head) else { return Vec::new() };
    let rest = &head[found.end()..];
    let mut parties = Vec::new();
    let first = party_name(rest);
    if first.is_empty() {
        return parties;
    }
    parties.push(first.clone());
    // The second party follows the first's description: after its defined nickname's
    // closing parenthesis, or the first " and " when there is none.
    let after_first = &rest[first.len().min(rest.len())..];
    let window: String = after_first.chars().take(1200).collect();
    let candidates =
        SECOND_PARTY.find_iter(&window).map(|m| m.end()).chain(window.find(" and ").map(|i| i + 5)).collect::<Vec<_>>();
    for at in candidates {
        let name = party_name(window[at..].trim_start_matches(|c: char| c == '"' || c.is_whitespace()));
        if looks_like_name(&name) && name != first {
            parties.push(name);
            break;
        }
    }
    parties
}

fn party_name(s: &str) -> String {
    let s = s.trim_start_matches(|c: char| c == '"' || c.is_whitespace());
    let s = s.strip_prefix("(1)").or_else(|| s.strip_prefix("(2)")).unwrap_or(s).trim_start();
    let end = PARTY_END.find(s).map_or(s.len().min(120), |m| m.start());
    let name = s[..end].trim().trim_end_matches(',').trim_matches('"').trim();
    // "between the At Home Corporation": the article is not part of the name (a capital
    // "The", as in "The University of ...", is).
    let name = name.strip_prefix("the ").unwrap_or(name);
    truncate_chars(name, 120)
}

fn looks_like_name(name: &str) -> bool {
    let words = name.split_whitespace().count();
    let first = name.split_whitespace().next().unwrap_or_default().to_lowercase();
    (1..=10).contains(&words)
        && name.chars().next().is_some_and(|c| c.is_uppercase() || c.is_ascii_digit())
        && !NOT_A_PARTY.contains(&first.trim_matches(|c: char| !c.is_alphanumeric()))
}

/// Words that open the text after a preamble, not a party's name.
const NOT_A_PARTY: [&str; 10] =
    ["recitals", "whereas", "witnesseth", "background", "definitions", "now", "article", "section", "preamble", "in"];

static MD_HEADING: LazyLock<Regex> = LazyLock::new(|| regex_or_never(r"^#{1,6}\s+(.*)$"));
static KEYWORD_HEADING: LazyLock<Regex> = LazyLock::new(|| {
    regex_or_never(r"^(?i:article|section|clause)\s+([0-9]+(?:\.[0-9]+)*|[IVXLC]+)\b[.:)]?\s*[-–]?\s*(.*)$")
});
static NUMBERED: LazyLock<Regex> =
    LazyLock::new(|| regex_or_never(r"^([0-9]{1,3}(?:\.[0-9]{1,3})*)(?:\.|\)|\.\)|(?:\.[0-9]{1,3})?)\s+(\S.*)$"));

/// Splits the text into sections at headings: Markdown headings, "Article/Section N",
/// numbered paragraphs ("4.", "4.2"), and lines in capitals.
fn sections(text: &str) -> Vec<Section> {
    let mut starts: Vec<(usize, String, String)> = Vec::new();
    let mut offset = 0;
    let mut previous = "";
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        // PDF text wraps sentences at any word: "as set forth in\nSection 4.2 ..." goes on.
        let wrapped = continues(previous) && !trimmed.starts_with('#');
        if let Some((number, heading)) = heading(trimmed).filter(|_| !wrapped) {
            starts.push((offset, number, heading));
        }
        previous = trimmed;
        offset += line.len();
    }
    let mut sections = Vec::new();
    let first_start = starts.first().map_or(text.len(), |(at, _, _)| *at);
    if !text[..first_start].trim().is_empty() {
        sections.push(Section {
            index: 0,
            number: String::new(),
            heading: "Preamble".to_owned(),
            start: 0,
            end: first_start,
        });
    }
    for (i, (start, number, heading)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(text.len(), |(at, _, _)| *at);
        sections.push(Section {
            index: sections.len(),
            number: number.clone(),
            heading: heading.clone(),
            start: *start,
            end,
        });
    }
    sections
}

/// Whether a line runs on into the next one (ends mid-sentence: a comma or a lowercase
/// word), so that the next line cannot start a heading.
fn continues(line: &str) -> bool {
    line.trim_end().ends_with(|c: char| c == ',' || c.is_lowercase())
}

/// A heading line's number and heading text, or `None` when the line is body text.
fn heading(line: &str) -> Option<(String, String)> {
    if line.is_empty() {
        return None;
    }
    if let Some(caps) = MD_HEADING.captures(line) {
        let rest = caps.get(1).map_or("", |m| m.as_str()).trim();
        return Some(heading(rest).unwrap_or_else(|| (String::new(), short_heading(rest))));
    }
    if let Some(caps) = KEYWORD_HEADING.captures(line) {
        let number = caps.get(1).map_or("", |m| m.as_str()).to_owned();
        return Some((number, short_heading(caps.get(2).map_or("", |m| m.as_str()))));
    }
    if let Some(caps) = NUMBERED.captures(line) {
        let rest = caps.get(2).map_or("", |m| m.as_str());
        let number = caps.get(1).map_or("", |m| m.as_str());
        // "30 days after ..." wrapped onto a new line is body text, not a heading.
        if rest.starts_with(|c: char| c.is_uppercase() || c == '"' || c == '(') && number.len() <= 8 {
            return Some((number.trim_end_matches('.').to_owned(), short_heading(rest)));
        }
    }
    let letters = line.chars().filter(|c| c.is_alphabetic()).count();
    if letters >= 4
        && line.len() <= 80
        && !line.chars().any(char::is_lowercase)
        && !line.ends_with(',')
        && line.split_whitespace().count() <= 10
    {
        return Some((String::new(), short_heading(line)));
    }
    None
}

/// "Payment. Customer shall pay..." gives "Payment"; a short line is its own heading;
/// a long sentence has none.
fn short_heading(rest: &str) -> String {
    let rest = rest.trim().trim_end_matches(':');
    if let Some(dot) = rest.find(". ") {
        let head = &rest[..dot];
        if head.len() <= 60 && head.split_whitespace().count() <= 8 {
            return head.trim().to_owned();
        }
    }
    if rest.len() <= 60 && !rest.ends_with('.') {
        return rest.trim().to_owned();
    }
    if rest.len() <= 60 && rest.split_whitespace().count() <= 6 {
        return rest.trim_end_matches('.').trim().to_owned();
    }
    String::new()
}

/// The sentences of `text` as byte ranges: split after `.`, `!` or `?` followed by a
/// space and a capital, digit, quote or bracket (except after common abbreviations), at
/// blank lines, and before list items starting a line ("(a)", "1.1", "-").
pub(crate) fn sentences(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let split_at = if matches!(b, b'.' | b'!' | b'?' | b';') {
            let next = i + 1;
            let after_space = next < bytes.len() && (bytes[next] == b' ' || bytes[next] == b'\n');
            let follow = text[next..].trim_start_matches([' ', '\n']).chars().next();
            let starts_new = follow.is_some_and(|c| c.is_uppercase() || c == '"' || c == '(' || c.is_ascii_digit());
            if after_space && starts_new && (b != b'.' || !is_abbreviation(&text[start..i])) && b != b';' {
                Some(next)
            } else {
                None
            }
        } else if b == b'\n' {
            let rest = &text[i + 1..];
            let line = rest.trim_start();
            let blank = rest.starts_with('\n');
            // A list item or heading starts a new sentence, unless the line before runs on
            // into it (PDF text breaks lines mid-sentence: "except (i) ..., \n(ii) ...").
            let before = text[start..i].trim_end();
            let runs_on = before.ends_with(|c: char| c == ',' || c.is_alphanumeric() || c == ')');
            let list_item = line.starts_with('(') && line.get(1..4).is_some_and(|s| s.contains(')'))
                || line.starts_with("- ")
                || line.starts_with("* ");
            let heading_line = heading(line.lines().next().unwrap_or_default()).is_some();
            (blank || (list_item && !runs_on) || (heading_line && !list_item && !continues(before))).then_some(i + 1)
        } else {
            None
        };
        if let Some(end) = split_at {
            push_trimmed(text, start, end, &mut out);
            start = end;
        }
        i += 1;
        while i < bytes.len() && !text.is_char_boundary(i) {
            i += 1;
        }
    }
    push_trimmed(text, start, text.len(), &mut out);
    out
}

fn push_trimmed(text: &str, start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    let piece = &text[start..end];
    let lead = piece.len() - piece.trim_start().len();
    let trail = piece.len() - piece.trim_end().len();
    if piece.trim().chars().any(char::is_alphanumeric) {
        out.push((start + lead, end - trail));
    }
}

const ABBREVIATIONS: [&str; 24] = [
    "inc", "ltd", "co", "corp", "llc", "l.l.c", "l.p", "no", "nos", "e.g", "i.e", "u.s", "u.k", "sec", "st", "mr",
    "ms", "mrs", "dr", "art", "para", "cf", "etc", "vs",
];

fn is_abbreviation(before: &str) -> bool {
    let word = before.rsplit(|c: char| c.is_whitespace() || c == '(').next().unwrap_or_default().to_lowercase();
    let word = word.trim_start_matches('"');
    ABBREVIATIONS.contains(&word)
        || (word.len() == 1 && word.chars().all(char::is_alphabetic))
        || word.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Compiles a pattern written in this crate; a broken pattern is a bug caught by the
/// tests (every table is compiled there), and here degrades to a regex that never matches.
pub(crate) fn regex_or_never(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|err| {
        debug_assert!(false, "invalid pattern {pattern:?}: {err}");
        #[allow(clippy::unwrap_used)] // a literal, valid pattern
        Regex::new(r"[^\s\S]").unwrap()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_folds_quotes_dashes_and_spaces() {
        let text = normalise("\u{201c}Client\u{201d}\u{a0}\u{2014}  pays\r\n\r\n\r\n\r\n**Net** 30\t days.");
        assert_eq!(text, "\"Client\" - pays\n\nNet 30 days.");
    }

    #[test]
    fn page_furniture_goes_and_broken_sentences_join() {
        let raw = "1. Term. The warranty runs for a period of the\n\n13\n\nninety days after delivery, and is termi-\nnated on notice.\nSource: ACME CORP, 8-K, 1/1/2020\n\n\
                   2. Law. Page 2 of 9\nPage 2 of 9\n\nCONFIDENTIAL\nCONFIDENTIAL\nCONFIDENTIAL\nThe law of Texas applies.";
        assert_eq!(
            normalise(raw),
            "1. Term. The warranty runs for a period of the\nninety days after delivery, and is terminated on notice.\n\n\
             2. Law. Page 2 of 9\n\nThe law of Texas applies."
        );
    }

    #[test]
    fn sections_split_at_each_heading_style() {
        let text = normalise(
            "MASTER SERVICES AGREEMENT\nThis Agreement is made between A Ltd and B plc.\n\n\
             1. Services. Provider shall provide.\n\
             1.1 Scope of the work is\n30 days after signing.\n\
             ARTICLE 2 - FEES\nFees are due.\n\
             ## 3. Governing Law\nLaw of Texas.\n\
             Section 4: Notices\nIn writing.\n",
        );
        let doc = ingest(&text);
        let labels: Vec<String> = doc.sections.iter().map(Section::label).collect();
        assert_eq!(
            labels,
            [
                "MASTER SERVICES AGREEMENT",
                "1 Services",
                "1.1 Scope of the work is",
                "2 FEES",
                "3 Governing Law",
                "4 Notices"
            ],
            "{doc:#?}"
        );
        assert!(doc.section_text(&doc.sections[2]).contains("30 days after signing"));
    }

    #[test]
    fn sentences_do_not_split_after_abbreviations_or_numbers() {
        let text = "Acme Inc. shall pay U.S. $5.00 per unit. See Section 4.2 below. (a) first; (b) second";
        let got: Vec<&str> = sentences(text).into_iter().map(|(s, e)| &text[s..e]).collect();
        assert_eq!(
            got,
            ["Acme Inc. shall pay U.S. $5.00 per unit.", "See Section 4.2 below.", "(a) first; (b) second"]
        );
    }

    #[test]
    fn parties_are_read_from_the_preamble() {
        let text = "This Agreement is entered into by and between Acme Robotics, Inc., a Delaware corporation \
                    (\"Acme\"), and Birchwood Analytics Ltd. (\"Birchwood\").";
        assert_eq!(parties(text), ["Acme Robotics, Inc.", "Birchwood Analytics Ltd."]);
    }
}
