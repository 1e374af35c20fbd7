//! `gateway parse` and `gateway convert`: look at a message the way the gateway reads it.
//!
//! - [`parse_command`] prints each message of a file as an indented tree: the segment groups
//!   of its structure, then per segment the fields that have a value, named for the common
//!   segments (`PID-5 Patient Name`), with components (`PID-5.1`) and subcomponents
//!   (`PID-3.4.1`) indented below when the field has more than one.
//! - [`convert_command`] converts each message with the site maps of a configuration file
//!   and prints the FHIR Bundles: JSON on stdout (one pretty-printed document per Bundle, in
//!   sending order, so one generic message is one JSON document and several are a JSON
//!   stream, `jq -s` reads it), the conversion report on stderr.
//!
//! The input may be a single message, several concatenated ones or an FHS/BHS batch file
//! (split with [`crate::hl7::batch::split`]); `-` reads standard input. A message that fails
//! does not stop the others, but the command then fails.
//!
//! Both print patient data: they are tools for an integration engineer at the appliance's
//! console, not for logs.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use jiff::tz::TimeZone;
use serde::Deserialize;

use crate::fhir::bundle::{self, Profile};
use crate::fhir::convert;
use crate::fhir::site::{MappingConfig, SiteMaps};
use crate::hl7::batch::{self, BatchWarning};
use crate::hl7::parser::{self, Field, Message, Presence, Segment};
use crate::hl7::structure::{self, Group, Node};

/// An error and its causes for the operator, each said once: many errors already quote their
/// cause (`journal x.db: No such file or directory`), and `{:#}` would print it again.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

/// Reads `path`, or standard input for `-`.
pub fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).context("reading standard input")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// Only the `[mapping]` section of a configuration file; other sections are ignored here
/// (the full file is checked by `gateway check-config`).
#[derive(Debug, Default, Deserialize)]
struct MappingSection {
    #[serde(default)]
    mapping: Option<MappingConfig>,
}

/// The site maps of a configuration file's `[mapping]` section (defaults when absent), with
/// relative code map paths resolved against the file's folder. `None`: no site maps, UTC.
pub fn load_site(config: Option<&Path>) -> anyhow::Result<SiteMaps> {
    let Some(path) = config else {
        return Ok(SiteMaps::empty(TimeZone::UTC));
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let section: MappingSection = toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        anyhow::anyhow!("{}:{line}: {}", path.display(), e.message().trim_end())
    })?;
    let mapping = section.mapping.unwrap_or_default();
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    SiteMaps::load(&mapping, &base).with_context(|| format!("{}: [mapping]", path.display()))
}

/// The messages of a file, with a warning line per batch protocol deviation.
fn messages(raw: &[u8]) -> (Vec<&[u8]>, Vec<String>) {
    let split = batch::split(raw);
    let warnings = split.warnings.iter().map(describe_batch_warning).collect();
    (split.messages, warnings)
}

fn describe_batch_warning(w: &BatchWarning) -> String {
    match w {
        BatchWarning::MessageCountMismatch { batch, declared, found } => {
            format!("batch {}: BTS-1 declares {declared} messages, found {found}", batch + 1)
        }
        BatchWarning::BatchCountMismatch { declared, found } => {
            format!("FTS-1 declares {declared} batches, found {found}")
        }
        BatchWarning::UnreadableCount { batch: Some(b) } => format!("batch {}: BTS-1 is not a number", b + 1),
        BatchWarning::UnreadableCount { batch: None } => "FTS-1 is not a number".into(),
        BatchWarning::MissingBatchTrailer { batch } => format!("batch {}: no BTS", batch + 1),
        BatchWarning::MissingFileTrailer => "FHS without FTS".into(),
        BatchWarning::StraySegment { offset, id } => format!("{id} segment outside any message at byte {offset}"),
    }
}

/// The messages of an input file (batch files split), with batch warnings on `err`; an
/// error when there is none.
fn split_input<'r>(raw: &'r [u8], input: &Path, err: &mut dyn Write) -> anyhow::Result<Vec<&'r [u8]>> {
    let (msgs, warnings) = messages(raw);
    for w in &warnings {
        writeln!(err, "warning: {w}")?;
    }
    if msgs.is_empty() {
        anyhow::bail!("{}: no HL7 message (no MSH segment) found", input.display());
    }
    Ok(msgs)
}

/// `gateway parse FILE`: the tree of every message on `out`, problems on `err`. Fails when a
/// message cannot be parsed (after printing the others).
pub fn parse_command(input: &Path, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<()> {
    let raw = read_input(input)?;
    let msgs = split_input(&raw, input, err)?;
    let mut failed = 0;
    for (n, m) in msgs.iter().enumerate() {
        if msgs.len() > 1 {
            writeln!(out, "# message {} of {}", n + 1, msgs.len())?;
        }
        match parser::parse(m) {
            Ok(msg) => out.write_all(render_tree(&msg).as_bytes())?,
            Err(e) => {
                failed += 1;
                writeln!(err, "message {}: cannot be parsed: {e}", n + 1)?;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} messages could not be parsed", msgs.len());
    }
    Ok(())
}

/// `gateway convert FILE`: Bundles on `out`, the report of each message on `err`. Fails when
/// a message cannot be converted or bundled (after handling the others).
pub fn convert_command(
    config: Option<&Path>,
    profile: Profile,
    input: &Path,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let site = load_site(config)?;
    let raw = read_input(input)?;
    let msgs = split_input(&raw, input, err)?;
    let mut failed = 0;
    for (n, m) in msgs.iter().enumerate() {
        let label = if msgs.len() > 1 { format!("message {} of {}", n + 1, msgs.len()) } else { "message".to_string() };
        let conv = match convert::convert(m, &site) {
            Ok(c) => c,
            Err(e) => {
                failed += 1;
                writeln!(err, "{label}: cannot be converted: {e}")?;
                continue;
            }
        };
        let bundles = match bundle::bundles(&conv, profile) {
            Ok(b) => b,
            Err(e) => {
                failed += 1;
                writeln!(err, "{label} (MSH-10 {}): cannot be bundled: {e}", conv.control_id)?;
                continue;
            }
        };
        for b in &bundles {
            serde_json::to_writer_pretty(&mut *out, b)?;
            writeln!(out)?;
        }
        let entries: usize = bundles.iter().map(|b| b["entry"].as_array().map_or(0, Vec::len)).sum();
        let r = &conv.report;
        writeln!(err, "{label} (MSH-10 {}): structure {}", conv.control_id, r.structure)?;
        writeln!(
            err,
            "  {} resources in {} {profile} bundle(s), {entries} entries",
            conv.resources.len(),
            bundles.len()
        )?;
        let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
        writeln!(err, "  unconsumed segments: {}", list(&r.unconsumed))?;
        writeln!(err, "  unmapped codes: {}", list(&r.unmapped_codes))?;
        if r.warnings.is_empty() {
            writeln!(err, "  warnings: none")?;
        } else {
            writeln!(err, "  warnings:")?;
            for w in &r.warnings {
                writeln!(err, "    - {w}")?;
            }
        }
    }
    out.flush()?;
    if failed > 0 {
        anyhow::bail!("{failed} of {} messages could not be converted", msgs.len());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The tree

/// Values longer than this are shortened in the tree (base64 attachments).
const MAX_SHOWN: usize = 200;

/// One message as an indented tree: header line, the groups of its structure with their
/// segments and fields, then segments the structure did not place and required items that
/// are missing. A message of an unsupported structure is shown as a flat segment list.
pub fn render_tree(msg: &Message) -> String {
    let mut out = String::new();
    let msh9 = msg.msh().field(9);
    let msg_type = [1, 2, 3]
        .map(|i| msh9.component(i).value().into_owned())
        .iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join("^");
    match structure::group(msg) {
        Ok(grouped) => {
            let _ = writeln!(
                out,
                "{} (MSH-9 {msg_type}, version {}, {} segments)",
                grouped.structure.id(),
                msg.version(),
                msg.segment_count()
            );
            render_group(msg, &grouped.root, 1, &mut out);
            for u in &grouped.unconsumed {
                let _ = writeln!(out, "not placed by the {} grammar:", grouped.structure.id());
                if let Some(seg) = msg.segment_at(u.index) {
                    render_segment(&seg, 1, &mut out);
                }
            }
            if !grouped.missing.is_empty() {
                let missing: Vec<String> = grouped.missing.iter().map(|m| format!("{}.{}", m.group, m.item)).collect();
                let _ = writeln!(out, "missing required: {}", missing.join(", "));
            }
        }
        Err(e) => {
            let _ = writeln!(out, "unsupported structure (MSH-9 {msg_type}): {e}");
            for seg in msg.segments() {
                render_segment(&seg, 1, &mut out);
            }
        }
    }
    out
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn render_group(msg: &Message, group: &Group, depth: usize, out: &mut String) {
    for node in &group.children {
        match node {
            Node::Segment(i) => {
                if let Some(seg) = msg.segment_at(*i) {
                    render_segment(&seg, depth, out);
                }
            }
            Node::Group(g) => {
                indent(out, depth);
                let _ = writeln!(out, "{}", g.name);
                render_group(msg, g, depth + 1, out);
            }
        }
    }
}

fn render_segment(seg: &Segment, depth: usize, out: &mut String) {
    let id = seg.id();
    indent(out, depth);
    let _ = writeln!(out, "{id} (segment {})", seg.index());
    for n in 1..=seg.field_count() {
        let field = seg.field(n);
        if field.is_empty() {
            continue;
        }
        render_field(id, n, &field, depth + 1, out);
    }
}

fn render_field(id: &str, n: usize, field: &Field, depth: usize, out: &mut String) {
    let label = match field_name(id, n) {
        Some(name) => format!("{id}-{n} {name}"),
        None => format!("{id}-{n}"),
    };
    let reps: Vec<_> = field.reps().collect();
    let repeated = reps.len() > 1;
    for (r, rep) in reps.iter().enumerate() {
        let rep_label = if repeated { format!("{label} [{}]", r + 1) } else { label.clone() };
        if rep.is_empty() {
            continue;
        }
        let components: Vec<_> = rep.components().collect();
        let simple = components.len() == 1 && components[0].sub_count() <= 1;
        if simple {
            indent(out, depth);
            let _ = writeln!(out, "{rep_label}: {}", shown(rep.presence(), &rep.value()));
            continue;
        }
        indent(out, depth);
        let _ = writeln!(out, "{rep_label}");
        for (c, comp) in components.iter().enumerate() {
            if comp.is_empty() {
                continue;
            }
            if comp.sub_count() <= 1 {
                indent(out, depth + 1);
                let _ = writeln!(out, "{id}-{n}.{}: {}", c + 1, shown(comp.presence(), &comp.value()));
                continue;
            }
            for (s, sub) in comp.subs().enumerate() {
                if sub.is_empty() {
                    continue;
                }
                indent(out, depth + 1);
                let _ = writeln!(out, "{id}-{n}.{}.{}: {}", c + 1, s + 1, shown(sub.presence(), &sub.value()));
            }
        }
    }
}

/// A value for one line of the tree: control characters escaped, long values shortened,
/// the explicit HL7 null shown as `""`.
fn shown(presence: Presence, value: &str) -> String {
    if presence == Presence::Null {
        return "\"\" (null)".into();
    }
    let mut s = String::with_capacity(value.len().min(MAX_SHOWN + 16));
    let total = value.chars().count();
    for c in value.chars().take(MAX_SHOWN) {
        match c {
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(s, "\\u{{{:x}}}", c as u32);
            }
            c => s.push(c),
        }
    }
    if total > MAX_SHOWN {
        let _ = write!(s, "… ({total} characters)");
    }
    s
}

/// The HL7 v2 name of field `n` of segment `id` (v2.5.1 names; later fields of v2.7+ where
/// the corpus uses them), for the common segments.
pub fn field_name(id: &str, n: usize) -> Option<&'static str> {
    let names: &[&str] = match id {
        "MSH" => MSH,
        "EVN" => EVN,
        "PID" => PID,
        "PD1" => PD1,
        "NK1" => NK1,
        "PV1" => PV1,
        "PV2" => PV2,
        "OBR" => OBR,
        "OBX" => OBX,
        "ORC" => ORC,
        "SPM" => SPM,
        "AL1" => AL1,
        "DG1" => DG1,
        "IN1" => IN1,
        "SCH" => SCH,
        "TXA" => TXA,
        "RXA" => RXA,
        "RXR" => RXR,
        "MRG" => MRG,
        "NTE" => NTE,
        _ => return None,
    };
    n.checked_sub(1).and_then(|i| names.get(i)).copied()
}

const MSH: &[&str] = &[
    "Field Separator",
    "Encoding Characters",
    "Sending Application",
    "Sending Facility",
    "Receiving Application",
    "Receiving Facility",
    "Date/Time of Message",
    "Security",
    "Message Type",
    "Message Control ID",
    "Processing ID",
    "Version ID",
    "Sequence Number",
    "Continuation Pointer",
    "Accept Acknowledgment Type",
    "Application Acknowledgment Type",
    "Country Code",
    "Character Set",
    "Principal Language of Message",
    "Alternate Character Set Handling Scheme",
    "Message Profile Identifier",
    "Sending Responsible Organization",
    "Receiving Responsible Organization",
    "Sending Network Address",
    "Receiving Network Address",
];

const EVN: &[&str] = &[
    "Event Type Code",
    "Recorded Date/Time",
    "Date/Time Planned Event",
    "Event Reason Code",
    "Operator ID",
    "Event Occurred",
    "Event Facility",
];

const PID: &[&str] = &[
    "Set ID - PID",
    "Patient ID",
    "Patient Identifier List",
    "Alternate Patient ID - PID",
    "Patient Name",
    "Mother's Maiden Name",
    "Date/Time of Birth",
    "Administrative Sex",
    "Patient Alias",
    "Race",
    "Patient Address",
    "County Code",
    "Phone Number - Home",
    "Phone Number - Business",
    "Primary Language",
    "Marital Status",
    "Religion",
    "Patient Account Number",
    "SSN Number - Patient",
    "Driver's License Number - Patient",
    "Mother's Identifier",
    "Ethnic Group",
    "Birth Place",
    "Multiple Birth Indicator",
    "Birth Order",
    "Citizenship",
    "Veterans Military Status",
    "Nationality",
    "Patient Death Date and Time",
    "Patient Death Indicator",
    "Identity Unknown Indicator",
    "Identity Reliability Code",
    "Last Update Date/Time",
    "Last Update Facility",
    "Species Code",
    "Breed Code",
    "Strain",
    "Production Class Code",
    "Tribal Citizenship",
];

const PD1: &[&str] = &[
    "Living Dependency",
    "Living Arrangement",
    "Patient Primary Facility",
    "Patient Primary Care Provider Name & ID No.",
    "Student Indicator",
    "Handicap",
    "Living Will Code",
    "Organ Donor Code",
    "Separate Bill",
    "Duplicate Patient",
    "Publicity Code",
    "Protection Indicator",
    "Protection Indicator Effective Date",
    "Place of Worship",
    "Advance Directive Code",
    "Immunization Registry Status",
    "Immunization Registry Status Effective Date",
    "Publicity Code Effective Date",
    "Military Branch",
    "Military Rank/Grade",
    "Military Status",
];

const NK1: &[&str] = &[
    "Set ID - NK1",
    "Name",
    "Relationship",
    "Address",
    "Phone Number",
    "Business Phone Number",
    "Contact Role",
    "Start Date",
    "End Date",
    "Next of Kin / Associated Parties Job Title",
    "Next of Kin / Associated Parties Job Code/Class",
    "Next of Kin / Associated Parties Employee Number",
    "Organization Name - NK1",
    "Marital Status",
    "Administrative Sex",
    "Date/Time of Birth",
    "Living Dependency",
    "Ambulatory Status",
    "Citizenship",
    "Primary Language",
    "Living Arrangement",
    "Publicity Code",
    "Protection Indicator",
    "Student Indicator",
    "Religion",
    "Mother's Maiden Name",
    "Nationality",
    "Ethnic Group",
    "Contact Reason",
    "Contact Person's Name",
    "Contact Person's Telephone Number",
    "Contact Person's Address",
    "Next of Kin/Associated Party's Identifiers",
    "Job Status",
    "Race",
    "Handicap",
    "Contact Person Social Security Number",
    "Next of Kin Birth Place",
    "VIP Indicator",
];

const PV1: &[&str] = &[
    "Set ID - PV1",
    "Patient Class",
    "Assigned Patient Location",
    "Admission Type",
    "Preadmit Number",
    "Prior Patient Location",
    "Attending Doctor",
    "Referring Doctor",
    "Consulting Doctor",
    "Hospital Service",
    "Temporary Location",
    "Preadmit Test Indicator",
    "Re-admission Indicator",
    "Admit Source",
    "Ambulatory Status",
    "VIP Indicator",
    "Admitting Doctor",
    "Patient Type",
    "Visit Number",
    "Financial Class",
    "Charge Price Indicator",
    "Courtesy Code",
    "Credit Rating",
    "Contract Code",
    "Contract Effective Date",
    "Contract Amount",
    "Contract Period",
    "Interest Code",
    "Transfer to Bad Debt Code",
    "Transfer to Bad Debt Date",
    "Bad Debt Agency Code",
    "Bad Debt Transfer Amount",
    "Bad Debt Recovery Amount",
    "Delete Account Indicator",
    "Delete Account Date",
    "Discharge Disposition",
    "Discharged to Location",
    "Diet Type",
    "Servicing Facility",
    "Bed Status",
    "Account Status",
    "Pending Location",
    "Prior Temporary Location",
    "Admit Date/Time",
    "Discharge Date/Time",
    "Current Patient Balance",
    "Total Charges",
    "Total Adjustments",
    "Total Payments",
    "Alternate Visit ID",
    "Visit Indicator",
    "Other Healthcare Provider",
];

const PV2: &[&str] = &[
    "Prior Pending Location",
    "Accommodation Code",
    "Admit Reason",
    "Transfer Reason",
    "Patient Valuables",
    "Patient Valuables Location",
    "Visit User Code",
    "Expected Admit Date/Time",
    "Expected Discharge Date/Time",
    "Estimated Length of Inpatient Stay",
    "Actual Length of Inpatient Stay",
    "Visit Description",
    "Referral Source Code",
    "Previous Service Date",
    "Employment Illness Related Indicator",
    "Purge Status Code",
    "Purge Status Date",
    "Special Program Code",
    "Retention Indicator",
    "Expected Number of Insurance Plans",
    "Visit Publicity Code",
    "Visit Protection Indicator",
    "Clinic Organization Name",
    "Patient Status Code",
    "Visit Priority Code",
    "Previous Treatment Date",
    "Expected Discharge Disposition",
    "Signature on File Date",
    "First Similar Illness Date",
    "Patient Charge Adjustment Code",
    "Recurring Service Code",
    "Billing Media Code",
    "Expected Surgery Date and Time",
    "Military Partnership Code",
    "Military Non-Availability Code",
    "Newborn Baby Indicator",
    "Baby Detained Indicator",
    "Mode of Arrival Code",
    "Recreational Drug Use Code",
    "Admission Level of Care Code",
    "Precaution Code",
    "Patient Condition Code",
    "Living Will Code",
    "Organ Donor Code",
    "Advance Directive Code",
    "Patient Status Effective Date",
    "Expected LOA Return Date/Time",
    "Expected Pre-admission Testing Date/Time",
    "Notify Clergy Code",
];

const OBR: &[&str] = &[
    "Set ID - OBR",
    "Placer Order Number",
    "Filler Order Number",
    "Universal Service Identifier",
    "Priority - OBR",
    "Requested Date/Time",
    "Observation Date/Time",
    "Observation End Date/Time",
    "Collection Volume",
    "Collector Identifier",
    "Specimen Action Code",
    "Danger Code",
    "Relevant Clinical Information",
    "Specimen Received Date/Time",
    "Specimen Source",
    "Ordering Provider",
    "Order Callback Phone Number",
    "Placer Field 1",
    "Placer Field 2",
    "Filler Field 1",
    "Filler Field 2",
    "Results Rpt/Status Chng - Date/Time",
    "Charge to Practice",
    "Diagnostic Serv Sect ID",
    "Result Status",
    "Parent Result",
    "Quantity/Timing",
    "Result Copies To",
    "Parent",
    "Transportation Mode",
    "Reason for Study",
    "Principal Result Interpreter",
    "Assistant Result Interpreter",
    "Technician",
    "Transcriptionist",
    "Scheduled Date/Time",
    "Number of Sample Containers",
    "Transport Logistics of Collected Sample",
    "Collector's Comment",
    "Transport Arrangement Responsibility",
    "Transport Arranged",
    "Escort Required",
    "Planned Patient Transport Comment",
    "Procedure Code",
    "Procedure Code Modifier",
    "Placer Supplemental Service Information",
    "Filler Supplemental Service Information",
    "Medically Necessary Duplicate Procedure Reason",
    "Result Handling",
    "Parent Universal Service Identifier",
];

const OBX: &[&str] = &[
    "Set ID - OBX",
    "Value Type",
    "Observation Identifier",
    "Observation Sub-ID",
    "Observation Value",
    "Units",
    "References Range",
    "Abnormal Flags",
    "Probability",
    "Nature of Abnormal Test",
    "Observation Result Status",
    "Effective Date of Reference Range",
    "User Defined Access Checks",
    "Date/Time of the Observation",
    "Producer's ID",
    "Responsible Observer",
    "Observation Method",
    "Equipment Instance Identifier",
    "Date/Time of the Analysis",
    "Observation Site",
    "Observation Instance Identifier",
    "Mood Code",
    "Performing Organization Name",
    "Performing Organization Address",
    "Performing Organization Medical Director",
];

const ORC: &[&str] = &[
    "Order Control",
    "Placer Order Number",
    "Filler Order Number",
    "Placer Group Number",
    "Order Status",
    "Response Flag",
    "Quantity/Timing",
    "Parent",
    "Date/Time of Transaction",
    "Entered By",
    "Verified By",
    "Ordering Provider",
    "Enterer's Location",
    "Call Back Phone Number",
    "Order Effective Date/Time",
    "Order Control Code Reason",
    "Entering Organization",
    "Entering Device",
    "Action By",
    "Advanced Beneficiary Notice Code",
    "Ordering Facility Name",
    "Ordering Facility Address",
    "Ordering Facility Phone Number",
    "Ordering Provider Address",
    "Order Status Modifier",
    "Advanced Beneficiary Notice Override Reason",
    "Filler's Expected Availability Date/Time",
    "Confidentiality Code",
    "Order Type",
    "Enterer Authorization Mode",
    "Parent Universal Service Identifier",
];

const SPM: &[&str] = &[
    "Set ID - SPM",
    "Specimen ID",
    "Specimen Parent IDs",
    "Specimen Type",
    "Specimen Type Modifier",
    "Specimen Additives",
    "Specimen Collection Method",
    "Specimen Source Site",
    "Specimen Source Site Modifier",
    "Specimen Collection Site",
    "Specimen Role",
    "Specimen Collection Amount",
    "Grouped Specimen Count",
    "Specimen Description",
    "Specimen Handling Code",
    "Specimen Risk Code",
    "Specimen Collection Date/Time",
    "Specimen Received Date/Time",
    "Specimen Expiration Date/Time",
    "Specimen Availability",
    "Specimen Reject Reason",
    "Specimen Quality",
    "Specimen Appropriateness",
    "Specimen Condition",
    "Specimen Current Quantity",
    "Number of Specimen Containers",
    "Container Type",
    "Container Condition",
    "Specimen Child Role",
];

const AL1: &[&str] = &[
    "Set ID - AL1",
    "Allergen Type Code",
    "Allergen Code/Mnemonic/Description",
    "Allergy Severity Code",
    "Allergy Reaction Code",
    "Identification Date",
];

const DG1: &[&str] = &[
    "Set ID - DG1",
    "Diagnosis Coding Method",
    "Diagnosis Code - DG1",
    "Diagnosis Description",
    "Diagnosis Date/Time",
    "Diagnosis Type",
    "Major Diagnostic Category",
    "Diagnostic Related Group",
    "DRG Approval Indicator",
    "DRG Grouper Review Code",
    "Outlier Type",
    "Outlier Days",
    "Outlier Cost",
    "Grouper Version And Type",
    "Diagnosis Priority",
    "Diagnosing Clinician",
    "Diagnosis Classification",
    "Confidential Indicator",
    "Attestation Date/Time",
    "Diagnosis Identifier",
    "Diagnosis Action Code",
];

const IN1: &[&str] = &[
    "Set ID - IN1",
    "Insurance Plan ID",
    "Insurance Company ID",
    "Insurance Company Name",
    "Insurance Company Address",
    "Insurance Co Contact Person",
    "Insurance Co Phone Number",
    "Group Number",
    "Group Name",
    "Insured's Group Emp ID",
    "Insured's Group Emp Name",
    "Plan Effective Date",
    "Plan Expiration Date",
    "Authorization Information",
    "Plan Type",
    "Name Of Insured",
    "Insured's Relationship To Patient",
    "Insured's Date Of Birth",
    "Insured's Address",
    "Assignment Of Benefits",
    "Coordination Of Benefits",
    "Coord Of Ben. Priority",
    "Notice Of Admission Flag",
    "Notice Of Admission Date",
    "Report Of Eligibility Flag",
    "Report Of Eligibility Date",
    "Release Information Code",
    "Pre-Admit Cert (PAC)",
    "Verification Date/Time",
    "Verification By",
    "Type Of Agreement Code",
    "Billing Status",
    "Lifetime Reserve Days",
    "Delay Before L.R. Day",
    "Company Plan Code",
    "Policy Number",
    "Policy Deductible",
    "Policy Limit - Amount",
    "Policy Limit - Days",
    "Room Rate - Semi-Private",
    "Room Rate - Private",
    "Insured's Employment Status",
    "Insured's Administrative Sex",
    "Insured's Employer's Address",
    "Verification Status",
    "Prior Insurance Plan ID",
    "Coverage Type",
    "Handicap",
    "Insured's ID Number",
    "Signature Code",
    "Signature Code Date",
    "Insured's Birth Place",
    "VIP Indicator",
];

const SCH: &[&str] = &[
    "Placer Appointment ID",
    "Filler Appointment ID",
    "Occurrence Number",
    "Placer Group Number",
    "Schedule ID",
    "Event Reason",
    "Appointment Reason",
    "Appointment Type",
    "Appointment Duration",
    "Appointment Duration Units",
    "Appointment Timing Quantity",
    "Placer Contact Person",
    "Placer Contact Phone Number",
    "Placer Contact Address",
    "Placer Contact Location",
    "Filler Contact Person",
    "Filler Contact Phone Number",
    "Filler Contact Address",
    "Filler Contact Location",
    "Entered By Person",
    "Entered By Phone Number",
    "Entered By Location",
    "Parent Placer Appointment ID",
    "Parent Filler Appointment ID",
    "Filler Status Code",
    "Placer Order Number",
    "Filler Order Number",
];

const TXA: &[&str] = &[
    "Set ID - TXA",
    "Document Type",
    "Document Content Presentation",
    "Activity Date/Time",
    "Primary Activity Provider Code/Name",
    "Origination Date/Time",
    "Transcription Date/Time",
    "Edit Date/Time",
    "Originator Code/Name",
    "Assigned Document Authenticator",
    "Transcriptionist Code/Name",
    "Unique Document Number",
    "Parent Document Number",
    "Placer Order Number",
    "Filler Order Number",
    "Unique Document File Name",
    "Document Completion Status",
    "Document Confidentiality Status",
    "Document Availability Status",
    "Document Storage Status",
    "Document Change Reason",
    "Authentication Person, Time Stamp",
    "Distributed Copies",
    "Folder Assignment",
    "Document Title",
    "Agreed Due Date/Time",
];

const RXA: &[&str] = &[
    "Give Sub-ID Counter",
    "Administration Sub-ID Counter",
    "Date/Time Start of Administration",
    "Date/Time End of Administration",
    "Administered Code",
    "Administered Amount",
    "Administered Units",
    "Administered Dosage Form",
    "Administration Notes",
    "Administering Provider",
    "Administered-at Location",
    "Administered Per (Time Unit)",
    "Administered Strength",
    "Administered Strength Units",
    "Substance Lot Number",
    "Substance Expiration Date",
    "Substance Manufacturer Name",
    "Substance/Treatment Refusal Reason",
    "Indication",
    "Completion Status",
    "Action Code - RXA",
    "System Entry Date/Time",
    "Administered Drug Strength Volume",
    "Administered Drug Strength Volume Units",
    "Administered Barcode Identifier",
    "Pharmacy Order Type",
];

const RXR: &[&str] = &[
    "Route",
    "Administration Site",
    "Administration Device",
    "Administration Method",
    "Routing Instruction",
    "Administration Site Modifier",
];

const MRG: &[&str] = &[
    "Prior Patient Identifier List",
    "Prior Alternate Patient ID",
    "Prior Patient Account Number",
    "Prior Patient ID",
    "Prior Visit Number",
    "Prior Alternate Visit ID",
    "Prior Patient Name",
];

const NTE: &[&str] = &[
    "Set ID - NTE",
    "Source of Comment",
    "Comment",
    "Comment Type",
    "Entered By",
    "Entered Date/Time",
    "Effective Start Date",
    "Expiration Date",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("journal {path}: {source}")]
        struct Open {
            path: String,
            source: std::io::Error,
        }
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let e = anyhow::Error::new(Open { path: "j.db".into(), source: io }).context("start-up");
        assert_eq!(format!("{e:#}"), "start-up: journal j.db: No such file or directory: No such file or directory");
        assert_eq!(error_chain(&e), "start-up: journal j.db: No such file or directory");
    }

    const ADT: &[u8] = b"MSH|^~\\&|EPIC|HOSP|GW|CLOUD|20260101120000||ADT^A01^ADT_A01|CTRL1|P|2.5.1\r\
EVN|A01|20260101120000\r\
PID|1||MRN123^^^HOSP&1.2.3&ISO^MR~999^^^SSA^SS||DOE^JANE^Q||19800101|\"\"|||1 Main St\\.br\\Apt 2^^Town^ST^12345\r\
PV1|1|I|W^101^A\r\
ZXY|custom\r\
QAK|stray\r";

    #[test]
    fn tree_shows_groups_fields_and_components() {
        let msg = parser::parse(ADT).unwrap();
        let tree = render_tree(&msg);
        let expected_lines = [
            "ADT_A01 (MSH-9 ADT^A01^ADT_A01, version 2.5.1, 6 segments)",
            "  MSH (segment 0)",
            "    MSH-1 Field Separator: |",
            "    MSH-2 Encoding Characters: ^~\\&",
            "    MSH-10 Message Control ID: CTRL1",
            "    MSH-9 Message Type",
            "      MSH-9.3: ADT_A01",
            "  PID (segment 2)",
            "    PID-3 Patient Identifier List [1]",
            "      PID-3.1: MRN123",
            "      PID-3.4.1: HOSP",
            "      PID-3.4.2: 1.2.3",
            "      PID-3.5: MR",
            "    PID-3 Patient Identifier List [2]",
            "    PID-5 Patient Name",
            "      PID-5.2: JANE",
            "    PID-7 Date/Time of Birth: 19800101",
            "    PID-8 Administrative Sex: \"\" (null)",
            "      PID-11.1: 1 Main St\\nApt 2",
            "    ZXY-1: custom",
            "not placed by the ADT_A01 grammar:",
            "  QAK (segment 5)",
        ];
        for line in expected_lines {
            assert!(
                tree.lines().any(|l| l == line || (line.ends_with(": ") && l.starts_with(line))),
                "missing {line:?} in\n{tree}"
            );
        }
        assert!(!tree.contains("PID-4"), "empty fields are skipped\n{tree}");
    }

    #[test]
    fn unsupported_structure_is_listed_flat() {
        let msg = parser::parse(b"MSH|^~\\&|A|B|C|D|20260101||QRY^A19|1|P|2.5\rQRD|x\r").unwrap();
        let tree = render_tree(&msg);
        assert!(tree.starts_with("unsupported structure (MSH-9 QRY^A19)"), "{tree}");
        assert!(tree.contains("  QRD (segment 1)\n    QRD-1: x\n"), "{tree}");
    }

    #[test]
    fn field_names() {
        assert_eq!(field_name("PID", 5), Some("Patient Name"));
        assert_eq!(field_name("MSH", 10), Some("Message Control ID"));
        assert_eq!(field_name("OBX", 5), Some("Observation Value"));
        assert_eq!(field_name("PV1", 44), Some("Admit Date/Time"));
        assert_eq!(field_name("IN1", 36), Some("Policy Number"));
        assert_eq!(field_name("RXA", 20), Some("Completion Status"));
        assert_eq!(field_name("PID", 0), None);
        assert_eq!(field_name("ZPD", 1), None);
    }

    #[test]
    fn long_values_and_control_characters() {
        assert_eq!(shown(Presence::Valued, "a\nb"), "a\\nb");
        let long = "x".repeat(300);
        assert!(shown(Presence::Valued, &long).ends_with("… (300 characters)"));
    }

    #[test]
    fn site_maps_from_a_config_file() {
        let dir = std::env::temp_dir().join(format!("gw-cli-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("maps")).unwrap();
        std::fs::write(dir.join("maps/lab.csv"), "source_system,source_code,target_system,target_code,target_display\nL,GLU,http://loinc.org,2345-7,Glucose\n").unwrap();
        let cfg = dir.join("site.toml");
        std::fs::write(
            &cfg,
            "[store]\npath = \"x\"\n\n[mapping]\ntime_zone = \"America/Chicago\"\ncode_maps = [\"maps/lab.csv\"]\n",
        )
        .unwrap();
        let site = load_site(Some(&cfg)).unwrap();
        assert_eq!(site.code("L", "GLU").unwrap().code, "2345-7");
        // No [mapping] section: defaults.
        std::fs::write(&cfg, "[store]\npath = \"x\"\n").unwrap();
        assert!(load_site(Some(&cfg)).unwrap().code("L", "GLU").is_none());
        // A bad [mapping] names the file.
        std::fs::write(&cfg, "[mapping]\ntime_zone = 3\n").unwrap();
        let e = format!("{:#}", load_site(Some(&cfg)).unwrap_err());
        assert!(e.contains("site.toml"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
