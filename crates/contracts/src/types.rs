//! The vocabulary of contract analysis: clause types, findings, facts, risks, the report,
//! and the run state that carries them through the graph.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A kind of clause the analyser recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClauseType {
    /// How and when the agreement ends: expiry, breach, insolvency.
    Termination,
    /// A party may end the agreement without cause.
    TerminationForConvenience,
    /// The term renews by itself unless a party gives notice.
    AutoRenewal,
    /// Indemnify, defend, hold harmless.
    Indemnification,
    /// A cap on liability or an exclusion of indirect damages.
    LimitationOfLiability,
    /// The law that governs the agreement.
    GoverningLaw,
    /// Arbitration, mediation, escalation, jurisdiction or venue of courts.
    DisputeResolution,
    /// Keeping information confidential.
    Confidentiality,
    /// A restriction on competing.
    NonCompete,
    /// No soliciting or hiring of employees or customers.
    NonSolicit,
    /// Assigning or transferring the agreement.
    Assignment,
    /// A change of control of a party and its consequences.
    ChangeOfControl,
    /// Fees, invoicing, due dates, late payment.
    PaymentTerms,
    /// Warranties, representations, or their disclaimer.
    Warranties,
    /// Who owns intellectual property, work product, inventions.
    IpOwnership,
    /// A licence to use intellectual property or software.
    LicenseGrant,
    /// Events beyond a party's reasonable control.
    ForceMajeure,
    /// A right to inspect or audit books, records or use.
    AuditRights,
    /// Exclusive dealing, territory or supply.
    Exclusivity,
    /// An obligation to carry insurance.
    Insurance,
    /// The term can be renewed or extended: automatically, by option, or for set periods.
    Renewal,
    /// Liability left without a cap: expressly unlimited, or carved out of the cap.
    UncappedLiability,
    /// A minimum purchase, order, volume, fee or payment a party commits to.
    MinimumCommitment,
    /// Obligations that go on after the agreement ends: transition, wind-down, sell-off,
    /// continued service, final payments, return of data.
    PostTerminationServices,
    /// A share of revenue or profit: royalties, commissions on sales, revenue share.
    RevenueSharing,
    /// A warranty limited to a period.
    WarrantyDuration,
}

impl ClauseType {
    /// Every clause type, in a stable order.
    pub const ALL: [ClauseType; 26] = [
        ClauseType::Termination,
        ClauseType::TerminationForConvenience,
        ClauseType::AutoRenewal,
        ClauseType::Indemnification,
        ClauseType::LimitationOfLiability,
        ClauseType::GoverningLaw,
        ClauseType::DisputeResolution,
        ClauseType::Confidentiality,
        ClauseType::NonCompete,
        ClauseType::NonSolicit,
        ClauseType::Assignment,
        ClauseType::ChangeOfControl,
        ClauseType::PaymentTerms,
        ClauseType::Warranties,
        ClauseType::IpOwnership,
        ClauseType::LicenseGrant,
        ClauseType::ForceMajeure,
        ClauseType::AuditRights,
        ClauseType::Exclusivity,
        ClauseType::Insurance,
        ClauseType::Renewal,
        ClauseType::UncappedLiability,
        ClauseType::MinimumCommitment,
        ClauseType::PostTerminationServices,
        ClauseType::RevenueSharing,
        ClauseType::WarrantyDuration,
    ];

    /// The snake_case id used in JSON and on the command line.
    pub fn id(self) -> &'static str {
        match self {
            ClauseType::Termination => "termination",
            ClauseType::TerminationForConvenience => "termination_for_convenience",
            ClauseType::AutoRenewal => "auto_renewal",
            ClauseType::Indemnification => "indemnification",
            ClauseType::LimitationOfLiability => "limitation_of_liability",
            ClauseType::GoverningLaw => "governing_law",
            ClauseType::DisputeResolution => "dispute_resolution",
            ClauseType::Confidentiality => "confidentiality",
            ClauseType::NonCompete => "non_compete",
            ClauseType::NonSolicit => "non_solicit",
            ClauseType::Assignment => "assignment",
            ClauseType::ChangeOfControl => "change_of_control",
            ClauseType::PaymentTerms => "payment_terms",
            ClauseType::Warranties => "warranties",
            ClauseType::IpOwnership => "ip_ownership",
            ClauseType::LicenseGrant => "license_grant",
            ClauseType::ForceMajeure => "force_majeure",
            ClauseType::AuditRights => "audit_rights",
            ClauseType::Exclusivity => "exclusivity",
            ClauseType::Insurance => "insurance",
            ClauseType::Renewal => "renewal",
            ClauseType::UncappedLiability => "uncapped_liability",
            ClauseType::MinimumCommitment => "minimum_commitment",
            ClauseType::PostTerminationServices => "post_termination_services",
            ClauseType::RevenueSharing => "revenue_sharing",
            ClauseType::WarrantyDuration => "warranty_duration",
        }
    }
}

impl fmt::Display for ClauseType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// What sort of agreement a contract is, guessed from its title and opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ContractKind {
    /// Non-disclosure or confidentiality agreement.
    Nda,
    /// Software-as-a-service or subscription agreement.
    Saas,
    /// Master services, services, or statement-of-work agreement.
    Services,
    /// Employment agreement.
    Employment,
    /// Lease of premises or equipment.
    Lease,
    /// Supply, purchase or manufacturing agreement.
    Supply,
    /// Software or technology licence.
    Licence,
    /// Consulting or independent contractor agreement.
    Consulting,
    /// Reseller, distribution or agency agreement.
    Reseller,
    /// Anything else.
    #[default]
    Other,
}

impl fmt::Display for ContractKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContractKind::Nda => "non-disclosure agreement",
            ContractKind::Saas => "SaaS subscription",
            ContractKind::Services => "services agreement",
            ContractKind::Employment => "employment agreement",
            ContractKind::Lease => "lease",
            ContractKind::Supply => "supply agreement",
            ContractKind::Licence => "licence",
            ContractKind::Consulting => "consulting agreement",
            ContractKind::Reseller => "reseller or distribution agreement",
            ContractKind::Other => "other",
        })
    }
}

/// A section of a contract, with its place in the normalised text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// Position among the sections, from 0.
    pub index: usize,
    /// Its number as written ("4", "4.2", "IV"), empty when unnumbered.
    pub number: String,
    /// Its heading, empty when it has none.
    pub heading: String,
    /// Byte offset of its first character in [`Document::text`].
    pub start: usize,
    /// Byte offset just past its last character in [`Document::text`].
    pub end: usize,
}

impl Section {
    /// "4.2 Limitation of Liability", or "section 3" when it has neither number nor heading.
    pub fn label(&self) -> String {
        match (self.number.is_empty(), self.heading.is_empty()) {
            (false, false) => format!("{} {}", self.number, self.heading),
            (false, true) => self.number.clone(),
            (true, false) => self.heading.clone(),
            (true, true) => format!("section {}", self.index + 1),
        }
    }
}

/// A contract after ingestion: normalised text, what it is, who signs it, its sections.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// The normalised text (Unicode quotes and dashes folded, whitespace tidied).
    pub text: String,
    /// The title, as written.
    pub title: String,
    /// What sort of agreement it is.
    pub kind: ContractKind,
    /// The parties' names, as written in the preamble.
    pub parties: Vec<String>,
    /// Its sections, in order; the preamble is the first when there is one.
    pub sections: Vec<Section>,
}

impl Document {
    /// The text of a section.
    pub fn section_text(&self, section: &Section) -> &str {
        self.text.get(section.start..section.end).unwrap_or_default()
    }
}

/// A clause the analyser found, with the evidence for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The clause type.
    pub clause: ClauseType,
    /// The section it is in ([`Section::label`]).
    pub section: String,
    /// The sentence that shows it.
    pub evidence: String,
    /// Byte offset of the evidence in [`Document::text`].
    pub start: usize,
    /// Byte offset just past the evidence in [`Document::text`].
    pub end: usize,
    /// How sure the analyser is, 0 to 1.
    pub confidence: f64,
}

/// An amount of money.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Money {
    /// ISO 4217 code: USD, EUR, GBP, ...
    pub currency: String,
    /// The amount in units of the currency.
    pub amount: f64,
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.amount.trunc() as u64;
        let mut digits = whole.to_string();
        let mut grouped = String::new();
        while digits.len() > 3 {
            let tail = digits.split_off(digits.len() - 3);
            grouped = format!(",{tail}{grouped}");
        }
        let cents = ((self.amount - self.amount.trunc()) * 100.0).round() as u64;
        if cents == 0 {
            write!(f, "{} {digits}{grouped}", self.currency)
        } else {
            write!(f, "{} {digits}{grouped}.{cents:02}", self.currency)
        }
    }
}

/// The key terms extracted from a contract.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// The effective (or commencement) date, ISO 8601.
    pub effective_date: Option<String>,
    /// The initial term in months.
    pub term_months: Option<u32>,
    /// Whether the term renews automatically.
    pub auto_renewal: bool,
    /// Days of notice needed to stop an automatic renewal.
    pub renewal_notice_days: Option<u32>,
    /// Days of notice needed to terminate without cause.
    pub termination_notice_days: Option<u32>,
    /// The governing law's jurisdiction ("Delaware", "England and Wales").
    pub governing_law: Option<String>,
    /// A fixed cap on liability, when the cap is a sum.
    pub liability_cap: Option<Money>,
    /// Every distinct monetary amount, in order of first appearance.
    pub amounts: Vec<Money>,
    /// When the initial term ends, ISO 8601: a date the contract names, or the effective
    /// date plus the initial term.
    #[serde(default)]
    pub expiration_date: Option<String>,
}

/// How serious a risk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Low,
    /// Worth negotiating.
    Medium,
    /// Needs a lawyer's eyes before signing.
    High,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        })
    }
}

/// A kind of risk the analyser flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RiskKind {
    /// Liability is unlimited, or nothing limits it where it should be.
    UncappedLiability,
    /// Only one party may terminate without cause.
    UnilateralTermination,
    /// The term renews automatically and the window to stop it is short.
    AutoRenewalShortNotice,
    /// The term renews automatically.
    AutoRenewal,
    /// No governing law is chosen.
    MissingGoverningLaw,
    /// An indemnity for any and all losses, however arising.
    BroadIndemnity,
    /// A non-compete that outlasts the relationship by more than a year.
    LongNonCompete,
    /// One party is bound to deal exclusively with the other.
    Exclusivity,
    /// Late payments bear heavy interest or charges.
    LatePaymentPenalty,
    /// A clause usual for this kind of contract is absent.
    MissingClause,
}

impl RiskKind {
    /// The snake_case id used in JSON.
    pub fn id(self) -> &'static str {
        match self {
            RiskKind::UncappedLiability => "uncapped_liability",
            RiskKind::UnilateralTermination => "unilateral_termination",
            RiskKind::AutoRenewalShortNotice => "auto_renewal_short_notice",
            RiskKind::AutoRenewal => "auto_renewal",
            RiskKind::MissingGoverningLaw => "missing_governing_law",
            RiskKind::BroadIndemnity => "broad_indemnity",
            RiskKind::LongNonCompete => "long_non_compete",
            RiskKind::Exclusivity => "exclusivity",
            RiskKind::LatePaymentPenalty => "late_payment_penalty",
            RiskKind::MissingClause => "missing_clause",
        }
    }
}

impl fmt::Display for RiskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// A risk, scored, with the evidence behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Risk {
    /// What kind of risk.
    pub kind: RiskKind,
    /// 0 to 100; 70 and above is high.
    pub score: u32,
    /// [`Severity`] derived from the score.
    pub severity: Severity,
    /// One line saying what is wrong.
    pub title: String,
    /// The sentence that shows it; empty when the risk is an absence.
    pub evidence: String,
    /// The section it is in; empty when the risk is an absence.
    pub section: String,
    /// What to do about it (filled in by the deeper review for high risks).
    pub recommendation: String,
    /// Whether the deeper review looked at it.
    pub reviewed: bool,
}

/// One clause type found in a contract, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClauseSummary {
    /// The clause type.
    pub clause: ClauseType,
    /// The sections it was found in.
    pub sections: Vec<String>,
    /// The strongest evidence.
    pub evidence: String,
}

/// The structured result of analysing one contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The contract's name (its file name).
    pub contract: String,
    /// Its title.
    pub title: String,
    /// What sort of agreement it is.
    pub kind: ContractKind,
    /// Its parties.
    pub parties: Vec<String>,
    /// How many sections it has.
    pub sections: usize,
    /// The clause types found, in [`ClauseType::ALL`] order.
    pub clauses: Vec<ClauseSummary>,
    /// Clause types usual for this kind of contract that it lacks.
    pub missing: Vec<ClauseType>,
    /// Key terms.
    pub facts: Facts,
    /// Risks, highest score first.
    pub risks: Vec<Risk>,
    /// 0 (sign nothing) to 100 (no risk found).
    pub score: u32,
    /// A few sentences for a person, written by the [`Model`](crate::Model).
    pub summary: String,
}

impl Report {
    /// The highest-ranked risk, if any.
    pub fn top_risk(&self) -> Option<&Risk> {
        self.risks.first()
    }

    /// Whether a clause type was found.
    pub fn has(&self, clause: ClauseType) -> bool {
        self.clauses.iter().any(|c| c.clause == clause)
    }
}

/// The state of one contract-analysis run.
///
/// Start a run with [`ContractState::new`]; the graph fills in the rest. As JSON, a run's
/// input needs only `name` and `text` (`{"name": "nda.md", "text": "..."}`): the other
/// fields default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContractState {
    /// The contract's name (its file name), carried into the report.
    pub name: String,
    /// The contract text as given; emptied once ingested (the document keeps the
    /// normalised text), so that checkpoints do not carry it twice.
    pub text: String,
    /// The ingested document.
    pub document: Option<Document>,
    /// Clause findings, appended by the classify tasks.
    pub findings: Vec<Finding>,
    /// Extracted key terms.
    pub facts: Option<Facts>,
    /// Scored risks.
    pub risks: Vec<Risk>,
    /// The final report.
    pub report: Option<Report>,
}

impl ContractState {
    /// The input of a run analysing `text`, named `name` in its report.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self { name: name.into(), text: text.into(), ..Self::default() }
    }
}
