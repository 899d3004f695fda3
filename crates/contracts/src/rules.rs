//! The analyser's knowledge, kept as data: patterns per clause type, contract kinds,
//! the clauses usual for each kind, and the advice given for each risk.
//!
//! Patterns describe legal language, never particular documents. They are matched
//! case-insensitively against one sentence at a time; a pattern's `unless` rules the
//! sentence out when it also matches (an indemnity *insurance* is not an indemnity).

use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};

use crate::types::{ClauseType, ContractKind, RiskKind};

/// One way a clause type shows in a sentence.
pub(crate) struct Pattern {
    /// Matches a sentence that shows the clause.
    pub(crate) shows: &'static str,
    /// Rules the sentence out when it matches too; empty for none.
    pub(crate) unless: &'static str,
}

const fn p(shows: &'static str) -> Pattern {
    Pattern { shows, unless: "" }
}

const fn p_unless(shows: &'static str, unless: &'static str) -> Pattern {
    Pattern { shows, unless }
}

/// How one clause type is recognised.
pub(crate) struct ClauseRule {
    pub(crate) clause: ClauseType,
    /// A section heading that names the clause; empty when headings are not evidence
    /// enough (a "Renewal" heading does not make a renewal automatic).
    pub(crate) heading: &'static str,
    pub(crate) patterns: &'static [Pattern],
}

/// Numbers as contracts write them: digits, or words with the digits in brackets.
pub(crate) const NUMBER: &str = r"(?:\d{1,4}|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|eighteen|twenty|twenty-four|thirty|thirty-six|forty-five|sixty|ninety|one hundred(?: and)? (?:eighty|twenty)|hundred)";

/// The clause table.
pub(crate) const CLAUSE_RULES: &[ClauseRule] = &[
    ClauseRule {
        clause: ClauseType::Termination,
        heading: r"terminat",
        patterns: &[
            p(r"\b(?:may|shall|will|can|right to)\s+(?:immediately\s+)?terminat"),
            p(r"\bterminat\w*\s+(?:this|the)\s+(?:agreement|lease|licen[cs]e|contract|employment)"),
            p(r"\b(?:upon|on|following|after)\s+(?:the\s+)?(?:termination|expiration|expiry)\b"),
            p(r"\b(?:agreement|lease|term)\s+(?:shall|will)\s+(?:terminate|expire)\b"),
        ],
    },
    ClauseRule {
        clause: ClauseType::TerminationForConvenience,
        heading: r"convenience",
        patterns: &[
            p_unless(
                r"\b(?:may|right\s+to|entitled\s+to|can)\b[\s\S]{0,60}\bterminat\w*[\s\S]{0,300}\b(?:for\s+(?:its\s+)?convenience|without\s+(?:cause|reason)|for\s+any\s+(?:reason|or\s+no\s+reason)|with\s+or\s+without\s+cause)",
                r"\b(?:is|are|be|been)\s+terminated\s+for\s+any\s+reason",
            ),
            p(
                r"\b(?:for\s+(?:its\s+)?convenience|without\s+cause|for\s+any\s+reason)\b[\s\S]{0,80}\b(?:may|right\s+to|entitled\s+to)\b[\s\S]{0,40}terminat",
            ),
            p(
                r"\bterminat[^.]*\b(?:for\s+(?:its|their|his|her)?\s*convenience\b|for\s+any\s+reason\s+or\s+(?:for\s+)?no\s+reason\b)",
            ),
            p(
                r"\b(?:for\s+(?:its|their|his|her)?\s*convenience\b|for\s+any\s+reason\s+or\s+(?:for\s+)?no\s+reason\b)[^.]*\bterminat",
            ),
            p_unless(
                r"\b(?:may|right\s+to|entitled\s+to|can)\b[\s\S]{0,60}\bterminat\w*[\s\S]{0,120}\bat\s+any\s+time\b",
                r"\bif\b|\bin\s+the\s+event\b|breach|default|insolv|bankrupt|fails?\s+to|as\s+follows|following\s+(?:events|circumstances)",
            ),
            p_unless(
                r"\bmay\s+terminat\w*\b[\s\S]{0,100}\b(?:on|upon|by\s+giving|giving|with|by|after)\b[\s\S]{0,50}\bdays?'?\s*(?:\([^)]*\)\s*)?(?:prior\s+|advance\s+)?(?:written\s+)?notice",
                r"breach|default|insolv|bankrupt|\bcured?\b|fails?\s+to|does\s+not|violat|winding|receiver|for\s+cause|non-?renewal|not\s+to\s+renew|\bif\b|in\s+the\s+event",
            ),
            p(r"\b(?:upon|on|with|by\s+giving|after)\b[\s\S]{0,80}\bnotice\b[\s\S]{0,60}\bfor\s+any\s+reason\b"),
        ],
    },
    ClauseRule {
        clause: ClauseType::AutoRenewal,
        heading: "",
        patterns: &[
            p_unless(
                r"\b(?:automatically|auto-?)\s*(?:be\s+)?(?:renew|extend)",
                r"\bnot\s+(?:be\s+)?(?:automatically\s+)?(?:renew|extend)|no\s+automatic",
            ),
            p_unless(
                r"\b(?:renew|extend)\w*\s+automatically",
                r"\bnot\s+(?:be\s+)?(?:renew|extend)\w*\s+automatically",
            ),
            p(
                r"\b(?:shall|will)\s+(?:thereafter\s+)?(?:be\s+)?(?:renew|extend)\w*\s+(?:\w+\s+){0,3}for\s+(?:successive|additional|further|consecutive|subsequent)",
            ),
            p(r"\bunless\s+(?:either|one|a|the)\s+(?:party|tenant|landlord|customer)\b[\s\S]{0,120}\bnon-?renewal"),
            p(r"\bevergreen\s+(?:basis|term|renewal|clause)"),
        ],
    },
    ClauseRule {
        clause: ClauseType::Indemnification,
        heading: r"indemn",
        patterns: &[
            p_unless(r"\bindemnif\w*", r"indemnity\s+insurance|professional\s+indemnity|indemnity\s+basis"),
            p_unless(
                r"\bindemnit(?:y|ies)\b",
                r"indemnity\s+insurance|professional\s+indemnity|indemnity\s+(?:cover|limit|basis)",
            ),
            p(r"\bhold\s+(?:\w+\s+){0,6}harmless"),
        ],
    },
    ClauseRule {
        clause: ClauseType::LimitationOfLiability,
        heading: r"limitation\s+of\s+liabilit|limitations?\s+on\s+liabilit|liability\s+cap|exclusion\s+of\s+(?:certain\s+)?damages|^liability$",
        patterns: &[
            p(r"limitation\s+of\s+liabilit"),
            p(r"\b(?:aggregate|total|maximum|cumulative|entire)\s+liabilit"),
            p(
                r"liabilit\w*[\s\S]{0,150}\b(?:shall|will)\s+not\s+exceed|liabilit\w*[\s\S]{0,100}\b(?:not\s+to\s+exceed|limited\s+to|capped\s+at)",
            ),
            p(r"\bin\s+no\s+event\s+(?:shall|will)\b[\s\S]{0,150}\bliable"),
            p(
                r"\b(?:neither|no)\s+party\s+(?:shall|will)\s+be\s+liable\b[\s\S]{0,150}\b(?:indirect|consequential|incidental|special|punitive|exemplary|lost\s+profits)",
            ),
            p(r"\bmay\s+be\s+(?:brought|commenced|instituted)\b[\s\S]{0,60}\bmore\s+than\b[\s\S]{0,60}\bafter\b"),
            p(
                r"(?:not\s+be\s+liable|no\s+liability|exclud\w*|waive\w*|disclaim\w*)[\s\S]{0,150}\b(?:indirect|consequential|incidental|special|punitive|exemplary)\b",
            ),
            p(
                r"(?:indirect|consequential|incidental|special|punitive)\s+(?:or\s+\w+\s+)?(?:damages|loss)[\s\S]{0,100}\b(?:excluded|shall\s+not\s+be\s+(?:liable|recoverable))",
            ),
        ],
    },
    ClauseRule {
        clause: ClauseType::GoverningLaw,
        heading: r"governing\s+law|applicable\s+law|choice\s+of\s+law|law\s+and\s+jurisdiction",
        patterns: &[
            p(r"\bgoverned\s+(?:by|in\s+accordance\s+with)\b[\s\S]{0,80}\blaws?\b"),
            p(
                r"\b(?:construed|interpreted|enforced)\s+(?:in\s+accordance\s+with|under)\b[\s\S]{0,60}\blaws?\s+(?:of|in)\b",
            ),
            p(r"\blaws?\s+(?:of|in\s+force\s+in)\s+[\s\S]{2,80}\s+(?:shall\s+|will\s+)?govern"),
            p(r"\bgoverning\s+law\b"),
            p(r"\bsubject\s+to\s+the\s+laws?\s+of\b"),
            p(r"\blaws?\s+(?:shall\s+|will\s+)?governs?\b"),
        ],
    },
    ClauseRule {
        clause: ClauseType::DisputeResolution,
        heading: r"dispute|arbitration|jurisdiction|venue",
        patterns: &[
            p(r"\barbitrat(?:ion|or|ors|ed|e)\b"),
            p(r"\bmediat(?:ion|or|ed|e)\b"),
            p(r"\b(?:exclusive|non-exclusive)\s+jurisdiction\b"),
            p(r"\bsubmit\w*\s+to\s+the\s+(?:exclusive\s+|non-exclusive\s+)?jurisdiction"),
            p(r"\bvenue\b"),
            p(r"\bescalat\w*[\s\S]{0,100}\b(?:dispute|senior|executive)"),
            p(r"\bdisputes?\b[\s\S]{0,100}\b(?:resolv|settle|referred|submitted|brought|courts?)\b"),
            p(r"\b(?:state|federal|competent)\s+courts?\b"),
            p(r"\bjury\s+trial\b"),
        ],
    },
    ClauseRule {
        clause: ClauseType::Confidentiality,
        heading: r"confiden|non-disclosure|secrecy",
        patterns: &[
            p(r"\bconfidential\s+information\b"),
            p(r"\bkeep\s+(?:\w+\s+){0,4}(?:confidential|secret)"),
            p(r"\b(?:hold|treat|maintain)\w*\s+[\s\S]{0,60}\b(?:confidence|confidential)"),
            p(r"\bnon-?disclosure\b"),
            p(r"\b(?:shall|will)\s+not\s+(?:\w+\s+){0,3}disclose\b"),
        ],
    },
    ClauseRule {
        clause: ClauseType::NonCompete,
        heading: r"non-?compet|restrictive\s+covenant|covenant\s+not\s+to\s+compete|competing",
        patterns: &[
            p(r"\bnon-?compet\w*"),
            p_unless(
                r"\b(?:shall|will|may)\s+not\b[\s\S]{0,120}\b(?:compete|competitive|competing|engage\s+in\s+(?:any\s+)?(?:business|activit))",
                r"anti-?competitive",
            ),
            p(
                r"\bnot\s+(?:to\s+)?(?:directly\s+or\s+indirectly\s+)?(?:compete|engage|carry\s+on|be\s+(?:engaged|concerned|interested))\b[\s\S]{0,100}\b(?:compet|similar|business)",
            ),
            p(r"\b(?:sell|market|distribute|promote|offer)\w*\s+(?:any\s+)?(?:competing|competitive)\s+products?"),
        ],
    },
    ClauseRule {
        clause: ClauseType::NonSolicit,
        heading: r"solicit",
        patterns: &[
            p(
                r"\b(?:not|no|neither|nor|refrain\s+from|prohibited\s+from)\b[\s\S]{0,120}\bsolicit(?:s|ed|ing|ation)?\b",
            ),
            p(r"\bnon-?solicit"),
            p_unless(
                r"\b(?:not|nor|refrain\s+from)\b[\s\S]{0,60}\b(?:hire|employ|engage|recruit|entice|induce|offer\s+(?:of\s+)?employment)\b[\s\S]{0,100}\b(?:employees?|personnel|staff|customers?|clients?)\b",
                r"debar|convicted|excluded|sanction",
            ),
            p(r"\b(?:not|nor)\b[\s\S]{0,60}\b(?:make|extend)\s+(?:an\s+)?offer\s+of\s+employment"),
        ],
    },
    ClauseRule {
        clause: ClauseType::Assignment,
        heading: r"assignment|successors\s+and\s+assigns|transfer\s+of\s+(?:this\s+)?agreement|subletting",
        patterns: &[
            p_unless(
                r"\bassign(?:ment|ed|s)?\b[\s\S]{0,80}\b(?:this\s+agreement|this\s+lease|its\s+rights|any\s+(?:of\s+(?:its|their)\s+)?rights|(?:its|their)\s+obligations|(?:this|the)\s+contract)",
                r"invention|intellectual\s+property|work\s+product|deliverables|copyright|title\s+and\s+interest|patent",
            ),
            p(
                r"\b(?:agreement|lease|rights|obligations)\b[\s\S]{0,80}\b(?:may|shall|will|cannot)\s+not\s+be\s+(?:assigned|transferred)|\b(?:agreement|lease|rights|obligations)\b[\s\S]{0,80}\bcannot\s+be\s+(?:assigned|transferred)",
            ),
            p(r"\b(?:neither|no)\s+party\s+(?:may|shall)\s+assign"),
            p(r"\bsub-?let"),
        ],
    },
    ClauseRule {
        clause: ClauseType::ChangeOfControl,
        heading: r"change\s+(?:of|in)\s+control",
        patterns: &[
            p(r"\bchange\s+(?:of|in)\s+(?:the\s+)?control\b"),
            p(
                r"\b(?:merger|acquisition|consolidation|reorgani[sz]ation)\b[\s\S]{0,100}\b(?:deemed|constitute)\w*\s+(?:to\s+be\s+)?an?\s+assignment",
            ),
            p(r"\b(?:acqui\w+|transfer\w*)\s+(?:of\s+)?(?:more\s+than\s+)?(?:fifty|50)\s*(?:percent|%|\(50%\))"),
            p(r"\bcontrolling\s+interest\b"),
        ],
    },
    ClauseRule {
        clause: ClauseType::PaymentTerms,
        heading: r"payment|fees|invoic|compensation|\brent\b|price|charges|salary",
        patterns: &[
            p(r"\binvoic(?:e|ed|es|ing)\b"),
            p_unless(r"\bpayable\b", r"liabilit"),
            p_unless(
                r"\b(?:fees?|rent|salary|price|charges?|compensation|royalt\w+)\b[\s\S]{0,80}\b(?:due|payable|paid|pay)\b",
                r"liabilit|exceed",
            ),
            p(r"\bnet\s+\d+\b"),
            p(r"\blate\s+(?:payment|charge|fee)s?\b"),
            p(r"\binterest\s+(?:at|of)\b[\s\S]{0,40}(?:per\s+(?:month|annum)|%)"),
            p(r"\b(?:base\s+)?salary\s+(?:of|at)\b"),
            p(r"\b(?:shall|will|agrees?\s+to)\s+pay\b"),
        ],
    },
    ClauseRule {
        clause: ClauseType::Warranties,
        heading: r"warrant|representations",
        patterns: &[
            p_unless(
                r"\bwarrant(?:s|y|ies|ed)?\b",
                r"warrants?\s+(?:to\s+)?(?:purchase|for\s+shares)|search\s+warrant",
            ),
            p(r"\bas\s+is\b"),
            p(r"\bdisclaim\w*[\s\S]{0,80}\b(?:warrant|implied|conditions)"),
            p(r"\bmerchantab"),
            p(r"\bfitness\s+for\s+a\s+particular"),
        ],
    },
    ClauseRule {
        clause: ClauseType::IpOwnership,
        heading: r"intellectual\s+property|inventions|work\s+product|proprietary\s+rights|ownership",
        patterns: &[
            p(
                r"\bintellectual\s+property\b[\s\S]{0,120}\b(?:own|owned|owner|ownership|vest|vests|belong|belongs|retain|retains|title|remains?\s+the\s+(?:sole\s+|exclusive\s+)?property)\b",
            ),
            p(
                r"\b(?:own|owns|ownership|vest|vests|retain|retains|title\s+to)\b[\s\S]{0,120}\b(?:intellectual\s+property|work\s+product|deliverables|inventions|copyrights?|patents?|materials)\b",
            ),
            p(r"\bworks?\s+made\s+for\s+hire\b"),
            p(
                r"\bhereby\s+(?:irrevocably\s+)?assigns?\b[\s\S]{0,120}\b(?:right,\s+title|inventions|intellectual|copyright|work\s+product|deliverables)",
            ),
            p(
                r"\b(?:all|any)\s+right,\s+title\s+and\s+interest\b[\s\S]{0,120}\b(?:intellectual|software|work\s+product|deliverables|inventions|materials|technology|documentation|copyright|patent)",
            ),
        ],
    },
    ClauseRule {
        clause: ClauseType::LicenseGrant,
        heading: r"licen[cs]e\s+grant|grant\s+of\s+licen[cs]e",
        patterns: &[
            p_unless(
                r"\bgrants?\b[\s\S]{0,120}\blicen[cs]e",
                r"business\s+licen|driver|permits?\s+and\s+licen|office\s+space|premises|parking",
            ),
            p(r"\bgrants?\b[\s\S]{0,80}\bright\b[\s\S]{0,60}\bto\s+(?:access|use)\b"),
            p_unless(
                r"\blicen[cs]e[sd]?\s+to\s+(?:use|access|reproduce|distribute|sell|make|copy|display|install)",
                r"office\s+space|premises|parking",
            ),
            p(r"\bhereby\s+licen[cs]es\b"),
        ],
    },
    ClauseRule {
        clause: ClauseType::ForceMajeure,
        heading: r"force\s+majeure",
        patterns: &[
            p(r"\bforce\s+majeure\b"),
            p(
                r"\b(?:beyond|outside)\s+(?:its|their|the|a\s+party's|such\s+party's|either\s+party's)\s+(?:reasonable\s+)?control",
            ),
            p(r"\bacts?\s+of\s+god\b"),
        ],
    },
    ClauseRule {
        clause: ClauseType::AuditRights,
        heading: r"\baudit|inspection|books\s+and\s+records",
        patterns: &[
            p_unless(
                r"\b(?:right|entitled|may|permit\w*|allow\w*|access|shall\s+(?:have|be\s+subject))\b[\s\S]{0,80}\baudit\w*",
                r"audited\s+financial|audit\s+committee|auditors?'?\s+(?:report|opinion)",
            ),
            p_unless(
                r"\baudit\w*\b[\s\S]{0,80}\b(?:books|records|accounts|facilities|premises|operations|compliance)\b",
                r"audited\s+financial|audit\s+committee|auditors?'?\s+(?:report|opinion)",
            ),
            p(r"\binspect(?:ion)?\b[\s\S]{0,80}\b(?:books|records|accounts|documentation|use\s+of)"),
            p(r"\b(?:books|records|accounts)\b[\s\S]{0,80}\b(?:examin\w*|inspect\w*|audit\w*|access)\b"),
        ],
    },
    ClauseRule {
        clause: ClauseType::Exclusivity,
        heading: r"exclusivity|exclusive\s+(?:dealing|supply|supplier|distribut\w*|rights?|appointment|territory|reseller|agency)",
        patterns: &[
            p_unless(
                r"\bexclusive(?:ly)?\b[\s\S]{0,80}\b(?:suppl|purchas|buy|distribut|resell|reseller|territory|provider|dealer|agent|source|requirements|market|sell|licen[cs]e)",
                r"non-?exclusive|exclusive\s+(?:jurisdiction|venue|remed)|exclusive\s+of\s+(?:vat|tax)|exclusive\s+(?:owner|property)|remed",
            ),
            p_unless(
                r"\b(?:suppl\w*|purchas\w*|buy\w*|distribut\w*|resell\w*|territory|requirements)\b[\s\S]{0,80}\bexclusive(?:ly)?\b",
                r"non-?exclusive|exclusive\s+(?:jurisdiction|venue|remed)|exclusive\s+of\s+(?:vat|tax)|exclusive\s+(?:owner|property)|remed",
            ),
            p(r"\bexclusivity\b"),
            p_unless(
                r"\bexclusive\s+right\s+to\b",
                r"exclusive\s+right\s+to\s+(?:terminate|seek|control\s+the\s+defen)",
            ),
            p(
                r"\bshall\s+not\b[\s\S]{0,80}\b(?:appoint|engage|purchase\s+from|buy\s+from)\s+(?:any\s+)?(?:other|another|third)",
            ),
        ],
    },
    ClauseRule {
        clause: ClauseType::Insurance,
        heading: r"insurance",
        patterns: &[
            p_unless(
                r"\b(?:maintain|carry|procure|obtain|keep|take\s+out)\b[\s\S]{0,80}\binsurance\b",
                r"health|medical|dental|life\s+insurance|benefit",
            ),
            p_unless(
                r"\binsurance\b[\s\S]{0,80}\b(?:coverage|cover|polic(?:y|ies)|limits?|not\s+less\s+than|in\s+an\s+amount|minimum)",
                r"health|medical|dental|life\s+insurance|benefit",
            ),
            p(r"\b(?:certificates?\s+of\s+insurance|additional(?:ly)?\s+insured|named\s+insured)"),
        ],
    },
    ClauseRule {
        clause: ClauseType::Renewal,
        heading: r"renewal|\bextension\s+of\s+(?:the\s+)?term",
        patterns: &[
            p(r"\b(?:option|right)\s+to\s+(?:renew|extend)"),
            p_unless(
                r"\b(?:renew|extend)\w*\b[\s\S]{0,100}\bfor\s+(?:\w+\s+|\(\d+\)\s+){0,4}(?:additional|successive|further|consecutive|renewal)\b",
                r"\bnot\s+(?:be\s+)?(?:automatically\s+)?(?:renew|extend)",
            ),
            p(r"\brenewal\s+(?:terms?|periods?)\b"),
            p_unless(r"\bautomatically\s+(?:be\s+)?(?:continue|renew|extend)", r"\bnot\s+(?:be\s+)?automatically"),
            p(r"\bfrom\s+year\s+to\s+year\b"),
        ],
    },
    ClauseRule {
        clause: ClauseType::UncappedLiability,
        heading: "",
        patterns: &[
            p(
                r"\b(?:limitations?|limits?|caps?|exclusions?)\b[\s\S]{0,150}\b(?:shall|will|do|does)\s+not\s+apply\s+to",
            ),
            p(r"\b(?:does|do|shall|will)\s+not\s+(?:limit|restrict)\b[\s\S]{0,100}\b(?:obligations?|liabilit\w*)\b"),
            p(r"\bexcept\b[\s\S]{0,200}\b(?:neither|no)\b[\s\S]{0,40}\bliabilit\w*[\s\S]{0,100}\bexceed"),
            p(
                r"\bunlimited\s+liabilit|liabilit\w*[\s\S]{0,100}\b(?:unlimited|shall\s+not\s+be\s+limited|without\s+(?:any\s+)?limits?\b)",
            ),
            p(r"\b(?:neither|nothing|no)\b[\s\S]{0,60}\b(?:excludes?|limits?|restricts?)\b[\s\S]{0,30}\bliabilit"),
            p_unless(
                r"\bexcept\b[\s\S]{0,150}\b(?:indemnif\w*|confidential\w*|gross\s+negligence|wil(?:l)?ful\s+misconduct|fraud)\b[\s\S]{0,200}\bliab",
                r"\bshall\s+(?:defend|indemnify)|\bhold\s+(?:\w+\s+){0,6}harmless|\bindemnify\s+and",
            ),
            p_unless(
                r"\bliab\w*[\s\S]{0,200}\b(?:except|other\s+than|excluding)\b[\s\S]{0,150}\b(?:indemnif\w*|confidential\w*|gross\s+negligence|wil(?:l)?ful\s+misconduct|fraud)",
                r"\bshall\s+(?:defend|indemnify)|\bhold\s+(?:\w+\s+){0,6}harmless|\bindemnify\s+and",
            ),
            p(r"\bliabilit\w*\b[\s\S]{0,150}\bremains?\s+unaffected"),
        ],
    },
    ClauseRule {
        clause: ClauseType::MinimumCommitment,
        heading: r"minimum\s+(?:purchase|order|commitment|volume)",
        patterns: &[
            p_unless(
                r"\bminimum\s+(?:annual\s+|monthly\s+|quarterly\s+|yearly\s+)?(?:purchase|order|quantit|volume|amount|fee|payment|commitment|royalt|sales|revenue|guarantee|number|charge|quota|development)",
                r"minimum\s+(?:wage|age)|insurance|coverage",
            ),
            p(
                r"\b(?:purchase|order|buy|pay|sell|fund|spend|deliver)\w*\s+(?:a\s+minimum\s+of|at\s+least|not\s+less\s+than|no\s+less\s+than)\b",
            ),
            p(
                r"\bquotas?\b|\b(?:binding|firm)\s+(?:order|commitment)s?\b|\bcommit\w*\s+(?:to\s+)?(?:fund|funding|purchase|order|spend)",
            ),
        ],
    },
    ClauseRule {
        clause: ClauseType::PostTerminationServices,
        heading: r"effects?\s+of\s+(?:termination|expiration)|transition|wind[-\s]?down|consequences\s+of\s+termination",
        patterns: &[
            p(
                r"\b(?:after|following|upon|on)\s+(?:the\s+|any\s+|such\s+)?(?:early\s+)?(?:termination|expiration|expiry)\b[\s\S]{0,150}\b(?:shall|will)\s+(?:continue\s+to\s+|promptly\s+|then\s+)?(?:provide|supply|support|deliver|sell|perform|make\b[\s\S]{0,40}\bavailable|assist|cooperate|pay|purchase|fill|honou?r)\b",
            ),
            p(r"\btransition\w*\s+(?:services|assistance|period)"),
            p_unless(
                r"\bwithin\b[\s\S]{0,40}\b(?:days?|months?)\s+(?:after|following|of)\s+(?:the\s+|any\s+|such\s+)?(?:termination|expiration|expiry)",
                r"compet|solicit|confidential|non-?disclos|destroy|return\s+(?:all|any)",
            ),
            p(r"\bwind[-\s]?down\b|\bsell[-\s]?off\b|\blast[-\s]time\s+buy"),
            p(
                r"\bcontinues?\s+to\s+(?:provide|supply|perform|support|sell)\b[\s\S]{0,100}\b(?:after|following)\s+(?:the\s+)?(?:termination|expiration|expiry)",
            ),
        ],
    },
    ClauseRule {
        clause: ClauseType::RevenueSharing,
        heading: r"royalt|revenue\s+shar|profit\s+shar|commission",
        patterns: &[
            p_unless(r"\broyalt(?:y|ies)\b", r"royalty[-\s](?:free|bearing)"),
            p(
                r"(?:percent|%)\s*(?:\)\s*)?of\s+(?:all\s+|the\s+|such\s+)?(?:aggregate\s+|total\s+)?(?:net\s+|gross\s+)?(?:dollar\s+)?(?:sales|revenues?|receipts|profits?|proceeds|income|billings|amounts?\s+(?:received|collected|paid))",
            ),
            p(r"\brevenue\s+shar|\bprofit\s+shar|\bshare\s+of\s+(?:the\s+)?(?:net\s+|gross\s+)?(?:revenues?|profits?)"),
            p(r"\bcommissions?\b[\s\S]{0,80}\b(?:on|of)\s+(?:all\s+)?(?:net\s+|gross\s+)?(?:sales|revenues?|orders)"),
            p(r"\b(?:commissions?|discount|fee)\b[\s\S]{0,40}\bequal\s+to\b[\s\S]{0,40}(?:percent|%)"),
        ],
    },
    ClauseRule {
        clause: ClauseType::WarrantyDuration,
        heading: r"warranty\s+period",
        patterns: &[
            p(
                r"\bwarrant\w*\b[\s\S]{0,150}\b(?:for\s+(?:a\s+)?(?:period\s+of\s+)?|within\s+)(?:\d{1,4}|one|two|three|four|five|six|twelve|eighteen|twenty-four|thirty|sixty|ninety)\s*(?:\(\d+\)\s*)?(?:days?|months?|years?)",
            ),
            p(r"\bwarranty\s+period\b"),
            p(
                r"\b(?:\d{1,4}|one|two|three|six|twelve|thirty|sixty|ninety)\s*(?:\(\d+\)\s*)?[-\s]?(?:day|month|year)\s+(?:limited\s+)?warranty",
            ),
        ],
    },
];

/// Ownership language that moves intellectual property from one party to the other (an
/// assignment, a work made for hire, rights that vest in or become the property of a
/// party), as opposed to a party keeping what it owns.
pub(crate) const IP_TRANSFER: &str = r"\bassign\w*|\bworks?\s+(?:made\s+)?for\s+hire|\bvest\w*\s+in\b|\b(?:become|be|remain)\s+the\s+(?:sole\s+(?:and\s+exclusive\s+)?|exclusive\s+)?property\s+of|\bshall\s+(?:solely\s+|exclusively\s+)?own\b|\btransfer\w*\s+(?:all|to)\b|\bconvey";

/// Contract kinds by words in the title (or, failing that, the opening), checked in
/// order: the first match wins, so narrower kinds come first.
pub(crate) const KIND_RULES: &[(ContractKind, &[&str])] = &[
    (ContractKind::Nda, &["non-disclosure", "nondisclosure", "confidentiality agreement", "secrecy agreement", "nda"]),
    (ContractKind::Employment, &["employment"]),
    (ContractKind::Consulting, &["consulting", "consultancy", "independent contractor"]),
    (ContractKind::Saas, &["subscription", "saas", "software as a service", "software-as-a-service", "cloud service"]),
    (ContractKind::Lease, &["lease", "tenancy", "rental agreement"]),
    (ContractKind::Reseller, &["reseller", "distribut", "dealer", "agency agreement", "affiliate agreement"]),
    (ContractKind::Supply, &["supply", "purchase agreement", "manufactur", "procurement"]),
    (ContractKind::Licence, &["licence", "license"]),
    (ContractKind::Services, &["services", "statement of work", "service agreement", "professional services"]),
];

/// The clause types a contract of each kind usually has; the report lists the ones
/// missing. Governing law and limitation of liability are checked as risks of their own.
pub(crate) fn standard_clauses(kind: ContractKind) -> &'static [ClauseType] {
    use ClauseType as C;
    match kind {
        ContractKind::Nda => &[C::Confidentiality, C::Termination],
        ContractKind::Employment => &[C::Confidentiality, C::Termination, C::PaymentTerms, C::IpOwnership],
        ContractKind::Lease => &[C::Termination, C::PaymentTerms, C::Insurance, C::Assignment],
        ContractKind::Licence => &[C::LicenseGrant, C::Termination, C::PaymentTerms, C::Warranties, C::IpOwnership],
        ContractKind::Saas | ContractKind::Services | ContractKind::Consulting => {
            &[C::Termination, C::PaymentTerms, C::Confidentiality, C::Warranties, C::Indemnification]
        }
        ContractKind::Supply | ContractKind::Reseller => {
            &[C::Termination, C::PaymentTerms, C::Warranties, C::Indemnification, C::ForceMajeure]
        }
        ContractKind::Other => &[C::Termination],
    }
}

/// Whether a contract of this kind should limit liability (an NDA, a lease or an
/// employment contract usually does not).
pub(crate) fn expects_liability_cap(kind: ContractKind) -> bool {
    !matches!(kind, ContractKind::Nda | ContractKind::Lease | ContractKind::Employment)
}

/// The advice attached to each risk.
pub(crate) fn recommendation(kind: RiskKind) -> &'static str {
    match kind {
        RiskKind::UncappedLiability => {
            "Negotiate a cap (for example the fees paid in the preceding 12 months) and an exclusion of indirect damages."
        }
        RiskKind::UnilateralTermination => {
            "Ask for a mutual right to terminate for convenience, a longer notice period, or payment for work in progress."
        }
        RiskKind::AutoRenewalShortNotice => {
            "Diary the non-renewal deadline now, or negotiate a notice window of at least 60 days."
        }
        RiskKind::AutoRenewal => "Diary the non-renewal deadline; consider renewal only by written agreement.",
        RiskKind::MissingGoverningLaw => {
            "Add a governing-law and jurisdiction clause; without one, which law applies is itself a dispute."
        }
        RiskKind::BroadIndemnity => {
            "Limit the indemnity to third-party claims caused by the indemnifying party, and bring it under the cap."
        }
        RiskKind::LongNonCompete => {
            "Shorten the restriction to 12 months or less and narrow its scope; long restraints may also be unenforceable."
        }
        RiskKind::Exclusivity => "Tie exclusivity to performance (minimum volumes, service levels) with a way out.",
        RiskKind::LatePaymentPenalty => "Negotiate interest closer to the statutory rate and a grace period.",
        RiskKind::MissingClause => "Consider adding the missing clause.",
    }
}

/// A [`ClauseRule`] with its patterns compiled.
pub(crate) struct CompiledRule {
    pub(crate) clause: ClauseType,
    pub(crate) heading: Option<Regex>,
    pub(crate) patterns: Vec<(Regex, Option<Regex>)>,
}

impl CompiledRule {
    /// Whether a sentence shows this clause.
    pub(crate) fn matches(&self, sentence: &str) -> bool {
        self.patterns
            .iter()
            .any(|(shows, unless)| shows.is_match(sentence) && !unless.as_ref().is_some_and(|u| u.is_match(sentence)))
    }

    /// Whether a section heading names this clause.
    pub(crate) fn names(&self, heading: &str) -> bool {
        self.heading.as_ref().is_some_and(|h| h.is_match(heading))
    }
}

/// Compiles a case-insensitive pattern of the tables above.
///
/// The lazy DFA's cache is bounded at 256 KiB per search cache (the regex crate's default
/// is 2 MiB): each pattern keeps one cache per analysis thread for the life of the process
/// (crates/contracts/src/cpu.rs), and with the default they kept growing round after round
/// of the memory soak. The bound took ~20 MiB off a service's RSS there and changed neither
/// the samples' results nor CUAD's macro-F1 (0.7406), nor the time per contract
/// (docs/benchmarks.md, "Memory soak").
pub(crate) fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern).case_insensitive(true).size_limit(1 << 22).dfa_size_limit(256 << 10).build()
}

fn compile_rule(rule: &ClauseRule) -> Result<CompiledRule, regex::Error> {
    let heading = if rule.heading.is_empty() { None } else { Some(compile(rule.heading)?) };
    let patterns = rule
        .patterns
        .iter()
        .map(|p| Ok((compile(p.shows)?, if p.unless.is_empty() { None } else { Some(compile(p.unless)?) })))
        .collect::<Result<_, regex::Error>>()?;
    Ok(CompiledRule { clause: rule.clause, heading, patterns })
}

/// The clause table, compiled once. A pattern that fails to compile is a bug the tests
/// catch ([`tests::every_pattern_compiles`]); in a release build the rule is left out.
pub(crate) static RULES: LazyLock<Vec<CompiledRule>> =
    LazyLock::new(|| CLAUSE_RULES.iter().filter_map(|rule| compile_rule(rule).ok()).collect());

/// The compiled rule of a clause type.
pub(crate) fn rule(clause: ClauseType) -> Option<&'static CompiledRule> {
    RULES.iter().find(|r| r.clause == clause)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        for rule in CLAUSE_RULES {
            if let Err(err) = compile_rule(rule) {
                panic!("a pattern of {} does not compile: {err}", rule.clause);
            }
        }
        assert_eq!(RULES.len(), CLAUSE_RULES.len());
    }

    #[test]
    fn every_clause_type_has_exactly_one_rule() {
        for clause in ClauseType::ALL {
            assert_eq!(CLAUSE_RULES.iter().filter(|r| r.clause == clause).count(), 1, "{clause}");
        }
    }

    fn shows(clause: ClauseType, sentence: &str) -> bool {
        rule(clause).is_some_and(|r| r.matches(sentence))
    }

    #[test]
    fn exclusions_rule_out_look_alikes() {
        assert!(shows(ClauseType::Indemnification, "Supplier shall defend, indemnify and hold harmless Customer."));
        assert!(!shows(ClauseType::Indemnification, "Supplier shall maintain professional indemnity insurance."));
        assert!(shows(ClauseType::Insurance, "Supplier shall maintain professional indemnity insurance."));
        assert!(!shows(ClauseType::Exclusivity, "The licence is non-exclusive and limited to the territory."));
        assert!(!shows(ClauseType::Exclusivity, "The courts of Munich have exclusive jurisdiction."));
        assert!(shows(ClauseType::Exclusivity, "Reseller is appointed the exclusive reseller in the Territory."));
        assert!(shows(
            ClauseType::TerminationForConvenience,
            "Either party may terminate this Agreement upon thirty (30) days' prior written notice."
        ));
        assert!(!shows(
            ClauseType::TerminationForConvenience,
            "Either party may terminate this Agreement upon 30 days' written notice if the other party materially breaches it."
        ));
        assert!(!shows(ClauseType::AutoRenewal, "This Agreement shall not renew automatically."));
        assert!(shows(
            ClauseType::AutoRenewal,
            "Thereafter it shall renew for successive one-year terms unless either party gives notice of non-renewal."
        ));
    }
}
