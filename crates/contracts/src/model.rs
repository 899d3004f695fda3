//! The [`Model`] seam: where a hosted language model would classify clauses and write
//! the summary. [`RuleModel`] is the deterministic default; [`LatencyModel`] adds a
//! fixed delay per call to emulate a hosted model.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::cpu;
use crate::rules::RULES;
use crate::text::sentences;
use crate::types::{ClauseType, Document, Finding, Report, Section};

/// Why a model call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The model could not be reached or is rate limiting; the node retries.
    #[error("model unavailable: {0}")]
    Unavailable(String),
    /// The model refused the input or answered nonsense; retrying will not help.
    #[error("model refused: {0}")]
    Refused(String),
    /// The model's own code panicked (the panic was caught); the node treats it as a
    /// panic of its own, which its retry policy may retry.
    #[error("model panicked: {0}")]
    Panicked(String),
}

impl From<cpu::Panicked> for ModelError {
    fn from(err: cpu::Panicked) -> Self {
        ModelError::Panicked(err.0)
    }
}

/// What classifies a contract's sections and writes its summary.
///
/// Implement it to plug in a hosted model client. Calls run on the run's own event loop
/// (its arbiter); a client should own its connection per call or per loop, never share
/// one across loops.
pub trait Model: Send + Sync + 'static {
    /// A short name for reports and logs.
    fn name(&self) -> &str;

    /// The clauses in `sections` of `document`, each with its evidence.
    fn classify<'a>(
        &'a self,
        document: &'a Document,
        sections: &'a [Section],
    ) -> BoxFuture<'a, Result<Vec<Finding>, ModelError>>;

    /// A few sentences summing up `report` for a person.
    fn summarize<'a>(&'a self, report: &'a Report) -> BoxFuture<'a, Result<String, ModelError>>;
}

/// At most this many findings (sentences) per clause type and section.
const EVIDENCE_PER_SECTION: usize = 3;

/// The built-in analyser: the table of patterns per clause type (`rules.rs`), sentence by
/// sentence. Deterministic, no network. Its [`Model::classify`] runs on the analyser's
/// own few threads (the `cpu` module), off the run's loop.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleModel;

impl RuleModel {
    /// The findings in one section: per clause type, the sentences that show it;
    /// a heading that names a clause type counts as evidence too. Up to three sentences per
    /// clause type and section are kept as evidence.
    pub fn classify_section(document: &Document, section: &Section) -> Vec<Finding> {
        Self::classify_text(&document.title, section, document.section_text(section))
    }

    /// [`classify_section`](Self::classify_section) given only what it reads: the
    /// document's title, the section and the section's text (`body`).
    fn classify_text(title: &str, section: &Section, body: &str) -> Vec<Finding> {
        let mut found: BTreeMap<ClauseType, Vec<Finding>> = BTreeMap::new();
        let heading_counts = !section.heading.is_empty() && section.heading != title;
        // The heading line itself is a label, not evidence ("6. INDEMNITY").
        let first_line = body.find('\n').unwrap_or(body.len());
        let is_heading_line = |start: usize, end: usize| {
            body[..start].trim().is_empty() && end <= first_line && end - start <= section.heading.len() + 16
        };
        for (start, end) in sentences(body).into_iter().filter(|(s, e)| !is_heading_line(*s, *e)) {
            let sentence = &body[start..end];
            for rule in RULES.iter() {
                let findings = found.entry(rule.clause).or_default();
                if findings.len() >= EVIDENCE_PER_SECTION || !rule.matches(sentence) {
                    continue;
                }
                let named = heading_counts && rule.names(&section.heading);
                findings.push(Finding {
                    clause: rule.clause,
                    section: section.label(),
                    evidence: sentence.to_owned(),
                    start: section.start + start,
                    end: section.start + end,
                    confidence: if named { 0.95 } else { 0.8 },
                });
            }
        }
        found.retain(|_, findings| !findings.is_empty());
        if heading_counts {
            let named: Vec<_> =
                RULES.iter().filter(|r| !found.contains_key(&r.clause) && r.names(&section.heading)).collect();
            for rule in named {
                let (start, end) =
                    sentences(body).into_iter().find(|(s, e)| !is_heading_line(*s, *e)).unwrap_or((0, body.len()));
                found.entry(rule.clause).or_default().push(Finding {
                    clause: rule.clause,
                    section: section.label(),
                    evidence: body[start..end].to_owned(),
                    start: section.start + start,
                    end: section.start + end,
                    confidence: 0.6,
                });
            }
        }
        found.into_values().flatten().collect()
    }
}

impl Model for RuleModel {
    fn name(&self) -> &str {
        "rules"
    }

    fn classify<'a>(
        &'a self,
        document: &'a Document,
        sections: &'a [Section],
    ) -> BoxFuture<'a, Result<Vec<Finding>, ModelError>> {
        // The pool's work must own its input: only the title and these sections' text are
        // copied, not the whole document (all classify tasks together copy it once).
        let title = document.title.clone();
        let parts: Vec<(Section, String)> =
            sections.iter().map(|s| (s.clone(), document.section_text(s).to_owned())).collect();
        Box::pin(async move {
            let findings = cpu::run(move || {
                parts.iter().flat_map(|(section, body)| Self::classify_text(&title, section, body)).collect()
            })
            .await?;
            Ok(findings)
        })
    }

    fn summarize<'a>(&'a self, report: &'a Report) -> BoxFuture<'a, Result<String, ModelError>> {
        Box::pin(std::future::ready(Ok(crate::report::summary(report))))
    }
}

/// A model that answers after a fixed delay per call, like a hosted model would.
#[derive(Clone)]
pub struct LatencyModel {
    inner: Arc<dyn Model>,
    latency: Duration,
}

impl LatencyModel {
    /// `inner`, answering each call `latency` later.
    pub fn new(inner: Arc<dyn Model>, latency: Duration) -> Self {
        Self { inner, latency }
    }
}

impl std::fmt::Debug for LatencyModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyModel").field("inner", &self.inner.name()).field("latency", &self.latency).finish()
    }
}

impl Model for LatencyModel {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn classify<'a>(
        &'a self,
        document: &'a Document,
        sections: &'a [Section],
    ) -> BoxFuture<'a, Result<Vec<Finding>, ModelError>> {
        Box::pin(async move {
            tokio::time::sleep(self.latency).await;
            self.inner.classify(document, sections).await
        })
    }

    fn summarize<'a>(&'a self, report: &'a Report) -> BoxFuture<'a, Result<String, ModelError>> {
        Box::pin(async move {
            tokio::time::sleep(self.latency).await;
            self.inner.summarize(report).await
        })
    }
}
