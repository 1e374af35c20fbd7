//! Code systems and HL7 v2 tables → FHIR codes, per the HL7 V2-to-FHIR IG concept maps
//! (the IG's published code system maps). Every function is a pure lookup:
//! unknown input → `None`; no output string is made up (codes, displays and system URIs
//! come from the IG tables, HL7 table 0396 and the FHIR specification).
//!
//! Choices where the IG is silent (or flags an open issue) are documented on the function.

use serde_json::Value;

use super::json::Obj;

/// A standard code with its system and display, as the IG concept maps give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub system: &'static str,
    pub code: &'static str,
    pub display: &'static str,
}

impl Code {
    /// As a FHIR `Coding`.
    pub fn coding(&self) -> Value {
        Obj::new().set("system", self.system).set("code", self.code).set("display", self.display).value()
    }

    /// As a FHIR `CodeableConcept` with this one coding.
    pub fn concept(&self) -> Value {
        Obj::new().list("coding", [self.coding()]).value()
    }
}

const fn c(system: &'static str, code: &'static str, display: &'static str) -> Code {
    Code { system, code, display }
}

pub const LOINC: &str = "http://loinc.org";
pub const SNOMED: &str = "http://snomed.info/sct";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const V3_ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const V3_MARITAL: &str = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus";
pub const V3_INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
pub const V3_ROLE_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
pub const V2_0004: &str = "http://terminology.hl7.org/CodeSystem/v2-0004";
pub const V2_0131: &str = "http://terminology.hl7.org/CodeSystem/v2-0131";
pub const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
pub const LOCATION_PHYSICAL_TYPE: &str = "http://terminology.hl7.org/CodeSystem/location-physical-type";

/// HL7 table 0396 (coding system) name → FHIR system URI, case-insensitive.
///
/// `HLnnnn`/`HL7nnnn`/`HL7-nnnn` become the v2 table code systems of THO
/// (`http://terminology.hl7.org/CodeSystem/v2-nnnn`). Local names (`L`, `99zzz`, site names)
/// are `None`: the caller decides (see `datatypes::codeable_concept`).
pub fn coding_system_uri(v2_name: &str) -> Option<&'static str> {
    let name = v2_name.trim().to_ascii_uppercase();
    let uri = match name.as_str() {
        "LN" | "LOINC" => LOINC,
        "SCT" | "SNM" | "SNM3" | "SNOMEDCT" | "SNOMED-CT" | "SNOMED CT" | "SNOMED" | "SCT2" => SNOMED,
        "I10" | "ICD10" | "ICD-10" => "http://hl7.org/fhir/sid/icd-10",
        "I10C" | "ICD10CM" | "ICD-10-CM" => "http://hl7.org/fhir/sid/icd-10-cm",
        "I10P" | "ICD10PCS" | "ICD-10-PCS" => "http://www.cms.gov/Medicare/Coding/ICD10",
        "I9" | "I9C" | "ICD9" | "ICD9CM" | "ICD-9-CM" => "http://hl7.org/fhir/sid/icd-9-cm",
        "CPT" | "C4" | "C5" | "CPT4" | "CPT-4" => "http://www.ama-assn.org/go/cpt",
        "HCPCS" | "HCPT" => "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
        "RXNORM" | "RXN" => "http://www.nlm.nih.gov/research/umls/rxnorm",
        "NDC" => "http://hl7.org/fhir/sid/ndc",
        "CVX" => "http://hl7.org/fhir/sid/cvx",
        "MVX" => "http://terminology.hl7.org/CodeSystem/MVX",
        "UCUM" => UCUM,
        "NUCC" | "NUCCPT" | "HCPTNUCC" => "http://nucc.org/provider-taxonomy",
        "CDCREC" => "urn:oid:2.16.840.1.113883.6.238",
        "NPI" => "http://hl7.org/fhir/sid/us-npi",
        // NCIT is the NCI Thesaurus (THO's preferred URI since 2022); the Metathesaurus is
        // another code system.
        "NCIT" => "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl",
        "NCI" => "http://ncimeta.nci.nih.gov",
        "UMLS" => "http://www.nlm.nih.gov/research/umls",
        "CDT" => "http://ada.org/cdt",
        "ISO3166_1" | "ISO3166-1" => "urn:iso:std:iso:3166",
        "ISO639" => "urn:ietf:bcp:47",
        "NDFRT" => "http://hl7.org/fhir/ndfrt",
        "FDDX" | "FDBDX" => "http://www.fdbhealth.com/",
        "MEDRT" => "http://va.gov/terminology/medrt",
        "UPC" => "urn:oid:2.16.840.1.113883.6.302",
        "HSLOC" => "https://www.cdc.gov/nhsn/cdaportal/terminology/codesystem/hsloc.html",
        "SOP" => "urn:oid:2.16.840.1.113883.3.221.5",
        "CDCPHINVS" => "urn:oid:2.16.840.1.114222.4.5.274",
        _ => return v2_table_uri(&name),
    };
    Some(uri)
}

/// `HL7nnnn`, `HL7-nnnn`, `HLnnnn` (4 digits) → the static THO v2 table URI.
fn v2_table_uri(upper: &str) -> Option<&'static str> {
    let digits = upper.strip_prefix("HL7").or_else(|| upper.strip_prefix("HL")).map(|d| d.trim_start_matches('-'))?;
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    V2_TABLES.iter().find(|t| t.ends_with(digits)).copied()
}

/// v2 tables with a THO code system a v2 message can name in CWE.3 (static strings so the
/// lookup stays `&'static str`); any other table goes through [`v2_table_system`].
static V2_TABLES: &[&str] = &[
    "http://terminology.hl7.org/CodeSystem/v2-0001",
    "http://terminology.hl7.org/CodeSystem/v2-0002",
    "http://terminology.hl7.org/CodeSystem/v2-0004",
    "http://terminology.hl7.org/CodeSystem/v2-0005",
    "http://terminology.hl7.org/CodeSystem/v2-0006",
    "http://terminology.hl7.org/CodeSystem/v2-0007",
    "http://terminology.hl7.org/CodeSystem/v2-0063",
    "http://terminology.hl7.org/CodeSystem/v2-0074",
    "http://terminology.hl7.org/CodeSystem/v2-0076",
    "http://terminology.hl7.org/CodeSystem/v2-0078",
    "http://terminology.hl7.org/CodeSystem/v2-0085",
    "http://terminology.hl7.org/CodeSystem/v2-0119",
    "http://terminology.hl7.org/CodeSystem/v2-0123",
    "http://terminology.hl7.org/CodeSystem/v2-0127",
    "http://terminology.hl7.org/CodeSystem/v2-0128",
    "http://terminology.hl7.org/CodeSystem/v2-0131",
    "http://terminology.hl7.org/CodeSystem/v2-0136",
    "http://terminology.hl7.org/CodeSystem/v2-0162",
    "http://terminology.hl7.org/CodeSystem/v2-0163",
    "http://terminology.hl7.org/CodeSystem/v2-0189",
    "http://terminology.hl7.org/CodeSystem/v2-0190",
    "http://terminology.hl7.org/CodeSystem/v2-0200",
    "http://terminology.hl7.org/CodeSystem/v2-0201",
    "http://terminology.hl7.org/CodeSystem/v2-0202",
    "http://terminology.hl7.org/CodeSystem/v2-0203",
    "http://terminology.hl7.org/CodeSystem/v2-0204",
    "http://terminology.hl7.org/CodeSystem/v2-0270",
    "http://terminology.hl7.org/CodeSystem/v2-0271",
    "http://terminology.hl7.org/CodeSystem/v2-0275",
    "http://terminology.hl7.org/CodeSystem/v2-0276",
    "http://terminology.hl7.org/CodeSystem/v2-0277",
    "http://terminology.hl7.org/CodeSystem/v2-0278",
    "http://terminology.hl7.org/CodeSystem/v2-0292",
    "http://terminology.hl7.org/CodeSystem/v2-0301",
    "http://terminology.hl7.org/CodeSystem/v2-0322",
    "http://terminology.hl7.org/CodeSystem/v2-0323",
    "http://terminology.hl7.org/CodeSystem/v2-0360",
    "http://terminology.hl7.org/CodeSystem/v2-0396",
    "http://terminology.hl7.org/CodeSystem/v2-0441",
    "http://terminology.hl7.org/CodeSystem/v2-0443",
    "http://terminology.hl7.org/CodeSystem/v2-0487",
    "http://terminology.hl7.org/CodeSystem/v2-0493",
    "http://terminology.hl7.org/CodeSystem/v2-0516",
    "http://terminology.hl7.org/CodeSystem/v2-0532",
    "http://terminology.hl7.org/CodeSystem/v2-0533",
];

/// True when `system` is one of the standard URIs this module produces (for "is this coding
/// mapped?" decisions).
pub fn is_standard_system(system: &str) -> bool {
    system.starts_with("http://terminology.hl7.org/CodeSystem/")
        || [
            "LN", "SCT", "I10", "I10C", "I10P", "I9C", "CPT", "HCPCS", "RXNORM", "NDC", "CVX", "UCUM", "NUCC",
            "CDCREC", "NPI",
        ]
        .iter()
        .any(|n| coding_system_uri(n) == Some(system))
}

/// `"0203"` (also `"203"`, `"HL70203"`) → `http://terminology.hl7.org/CodeSystem/v2-0203`.
pub fn v2_table_system(table: &str) -> String {
    let t = table.trim();
    let upper = t.to_ascii_uppercase();
    let digits = upper.strip_prefix("HL7").map(|d| d.trim_start_matches('-')).unwrap_or(&upper);
    if !digits.is_empty() && digits.len() <= 4 && digits.bytes().all(|b| b.is_ascii_digit()) {
        format!("http://terminology.hl7.org/CodeSystem/v2-{digits:0>4}")
    } else {
        format!("http://terminology.hl7.org/CodeSystem/v2-{t}")
    }
}

/// Table 0001 → `Patient.gender` (IG AdministrativeSex: A and N → other).
pub fn administrative_sex(v2: &str) -> Option<&'static str> {
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "F" => "female",
        "M" => "male",
        "O" | "A" | "N" => "other",
        "U" => "unknown",
        _ => return None,
    })
}

/// Table 0200 → `HumanName.use` (IG NameType; codes without a target → `None`).
pub fn name_use(v2: &str) -> Option<&'static str> {
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "BAD" => "old",
        "D" => "usual",
        "L" | "R" => "official",
        "M" => "maiden",
        "MSK" => "anonymous",
        "N" => "nickname",
        "NAV" | "TEMP" => "temp",
        _ => return None,
    })
}

/// Table 0190 → `Address.use` (IG AddressType\[Use\]).
pub fn address_use(v2: &str) -> Option<&'static str> {
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "BA" => "old",
        "BI" => "billing",
        "C" => "temp",
        "B" | "O" => "work",
        "H" => "home",
        _ => return None,
    })
}

/// Table 0190 → `Address.type` (IG AddressType\[Type\]).
pub fn address_type(v2: &str) -> Option<&'static str> {
    match v2.trim().to_ascii_uppercase().as_str() {
        "M" | "SH" => Some("postal"),
        _ => None,
    }
}

/// Table 0201 → `ContactPoint.use` (IG TelecommunicationUseCode).
pub fn telecom_use(v2: &str) -> Option<&'static str> {
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "PRN" => "home",
        "WPN" => "work",
        "PRS" => "mobile",
        _ => return None,
    })
}

/// Table 0202 → `ContactPoint.system` (IG TelecommunicationEquipmentType). The IG maps `CP`
/// to the *use* `mobile`; as FHIR-Converter does, its system is `phone` (and
/// [`telecom_equipment_use`] gives the use).
pub fn telecom_system(v2: &str) -> Option<&'static str> {
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "PH" | "CP" => "phone",
        "FX" => "fax",
        "MD" | "SAT" | "TDD" | "TTY" => "other",
        "BP" => "pager",
        "INTERNET" | "X.400" => "email",
        _ => return None,
    })
}

/// The `ContactPoint.use` implied by the equipment type (table 0202): `CP` → `mobile`.
pub fn telecom_equipment_use(v2: &str) -> Option<&'static str> {
    v2.trim().eq_ignore_ascii_case("CP").then_some("mobile")
}

/// Table 0002 → v3-MaritalStatus (IG MaritalStatus; `P` is "Domestic partner" → `T`).
pub fn marital_status(v2: &str) -> Option<Code> {
    let m = |code, display| c(V3_MARITAL, code, display);
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "A" | "E" => m("L", "Legally Separated"),
        "D" => m("D", "Divorced"),
        "M" => m("M", "Married"),
        "S" => m("S", "Never Married"),
        "W" => m("W", "Widowed"),
        "C" => m("C", "Common Law"),
        "G" | "P" | "R" => m("T", "Domestic partner"),
        "N" => m("A", "Annulled"),
        "I" => m("I", "Interlocutory"),
        "B" => m("U", "unmarried"),
        "U" => m("UNK", "Unknown"),
        "O" => m("OTH", "Other"),
        "T" => m("NAVU", "Not available"),
        _ => return None,
    })
}

/// Table 0203 identifier type → `Identifier.type`: the code kept as sent, in the v2-0203
/// system (the IG IdentifierType map is the identity). `Null` when empty.
pub fn identifier_type(v2: &str) -> Value {
    let code = v2.trim();
    if code.is_empty() || code.contains(char::is_whitespace) {
        return Value::Null;
    }
    Obj::new().list("coding", [Obj::new().set("system", V2_0203).set("code", code).value()]).value()
}

/// Table 0085 → `Observation.status` (IG ObservationResultStatusCodesInterpretation).
/// Where the IG has no target, as FHIR-Converter: `I` → registered, `R`/`S` → preliminary,
/// `B` → amended, `U`/`V` → final. `N`, `O` → `None`.
pub fn observation_status(v2: &str) -> Option<&'static str> {
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "A" | "B" => "amended",
        "C" => "corrected",
        "D" | "W" => "entered-in-error",
        "F" | "U" | "V" => "final",
        "P" | "R" | "S" => "preliminary",
        "I" => "registered",
        "X" => "cancelled",
        _ => return None,
    })
}

/// Table 0123 → `DiagnosticReport.status` (IG ResultStatus). `A` (some results available),
/// which the IG leaves open, → `partial` (as FHIR-Converter); `M` (corrected, not final) →
/// `corrected`; `Y`, `Z`, `N` → `None`.
pub fn result_status(v2: &str) -> Option<&'static str> {
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "O" | "I" | "S" => "registered",
        "P" => "preliminary",
        "C" | "M" => "corrected",
        "R" | "A" => "partial",
        "F" => "final",
        "X" => "cancelled",
        _ => return None,
    })
}

/// Table 0078 → v3-ObservationInterpretation (IG InterpretationCodes; codes the IG marks
/// inactive in v3 — AC, HM, OBX, QCF, TOX — → `None`).
pub fn interpretation(v2: &str) -> Option<Code> {
    let i = |code, display| c(V3_INTERPRETATION, code, display);
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "<" => i("<", "Off scale low"),
        ">" => i(">", "Off scale high"),
        "A" => i("A", "Abnormal"),
        "AA" => i("AA", "Critical abnormal"),
        "B" => i("B", "Better"),
        "CAR" => i("CAR", "Carrier"),
        "D" => i("D", "Significant change down"),
        "DET" => i("DET", "Detected"),
        "E" => i("E", "Equivocal"),
        "EX" => i("EX", "outside threshold"),
        "EXP" => i("EXP", "Expected"),
        "H" => i("H", "High"),
        "HH" => i("HH", "Critical high"),
        "HU" => i("HU", "Significantly high"),
        "I" => i("I", "Intermediate"),
        "IE" => i("IE", "Insufficient evidence"),
        "IND" => i("IND", "Indeterminate"),
        "L" => i("L", "Low"),
        "LL" => i("LL", "Critical low"),
        "LU" => i("LU", "Significantly low"),
        "MS" => i("MS", "moderately susceptible"),
        "N" => i("N", "Normal"),
        "NCL" => i("NCL", "No CLSI defined breakpoint"),
        "ND" => i("ND", "Not detected"),
        "NEG" => i("NEG", "Negative"),
        "NR" => i("NR", "Non-reactive"),
        "NS" => i("NS", "Non-susceptible"),
        "POS" => i("POS", "Positive"),
        "R" => i("R", "Resistant"),
        "RR" => i("RR", "Reactive"),
        "S" => i("S", "Susceptible"),
        "SDD" => i("SDD", "Susceptible-dose dependent"),
        "SYN-R" => i("SYN-R", "Synergy - resistant"),
        "SYN-S" => i("SYN-S", "Synergy - susceptible"),
        "U" => i("U", "Significant change up"),
        "UNE" => i("UNE", "Unexpected"),
        "VS" => i("VS", "very susceptible"),
        "W" => i("W", "Worse"),
        "WR" => i("WR", "Weakly reactive"),
        _ => return None,
    })
}

/// Table 0127 → `AllergyIntolerance.category` (IG AllergenType). MA, MC → `None`.
pub fn allergy_category(v2: &str) -> Option<&'static str> {
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "DA" => "medication",
        "FA" => "food",
        "EA" | "PA" | "LA" => "environment",
        "AA" => "biologic",
        _ => return None,
    })
}

/// Table 0128 → `AllergyIntolerance.criticality` (IG: SV → high, MI → low; MO, U → `None`).
pub fn allergy_criticality(v2: &str) -> Option<&'static str> {
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "SV" => "high",
        "MI" => "low",
        _ => return None,
    })
}

/// Table 0128 → `AllergyIntolerance.reaction.severity`.
pub fn reaction_severity(v2: &str) -> Option<&'static str> {
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "SV" => "severe",
        "MO" => "moderate",
        "MI" => "mild",
        _ => return None,
    })
}

/// Table 0004 → `Encounter.class` (IG PatientClass\[EncounterClass\]): I/O/E/P → v3-ActCode
/// IMP/AMB/EMER/PRENC; R, B, C, N, U keep their code in the v2-0004 system.
pub fn encounter_class(v2: &str) -> Option<Code> {
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "E" => c(V3_ACT_CODE, "EMER", "emergency"),
        "I" => c(V3_ACT_CODE, "IMP", "inpatient encounter"),
        "O" => c(V3_ACT_CODE, "AMB", "ambulatory"),
        "P" => c(V3_ACT_CODE, "PRENC", "pre-admission"),
        "R" => c(V2_0004, "R", "Recurring patient"),
        "B" => c(V2_0004, "B", "Obstetrics"),
        "C" => c(V2_0004, "C", "Commercial Account"),
        "N" => c(V2_0004, "N", "Not Applicable"),
        "U" => c(V2_0004, "U", "Unknown"),
        _ => return None,
    })
}

/// Table 0119 (ORC-1, used when ORC-5 is empty) → `ServiceRequest.status` (IG
/// OrderControlCode[ServiceRequest.status]).
pub fn order_control_status(v2: &str) -> Option<&'static str> {
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "AF" | "CA" | "HD" | "NW" | "OK" | "PR" | "PY" | "RL" | "RO" | "RQ" => "active",
        "CR" | "DC" | "DF" | "DR" | "OC" | "OD" => "revoked",
        "FU" => "completed",
        "HR" | "OH" => "on-hold",
        _ => return None,
    })
}

/// `ServiceRequest.intent`: the IG assigns `order` for every ORC (ORC-1 does not change it).
pub fn order_intent(_order_control: &str) -> &'static str {
    "order"
}

/// Table 0038 (ORC-5) → `ServiceRequest.status` (IG OrderStatus); codes the IG leaves
/// unmapped (A, …) → `None`.
pub fn order_status(v2: &str) -> Option<&'static str> {
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "CA" | "DC" | "RP" => "revoked",
        "CM" => "completed",
        "ER" => "entered-in-error",
        "HD" => "on-hold",
        "IP" | "SC" => "active",
        _ => return None,
    })
}

/// Table 0278 (SCH-25 filler status) → `Appointment.status` (IG FillerStatusCodes; matched
/// case-insensitively). Discontinued, Blocked, Overbook → `None`.
pub fn appointment_status(v2: &str) -> Option<&'static str> {
    Some(match v2.trim().to_ascii_lowercase().as_str() {
        "pending" => "pending",
        "waitlist" => "waitlist",
        "booked" => "booked",
        "started" => "checked-in",
        "complete" => "fulfilled",
        "cancelled" => "cancelled",
        "deleted" => "entered-in-error",
        "noshow" => "noshow",
        _ => return None,
    })
}

/// Table 0271 (TXA-17) → `DocumentReference.docStatus` / `Composition.status`. The IG copies
/// the code (ID\[code\]), which is not a FHIR code; we map: AU, LA → final; DI, DO, IN, IP,
/// PA → preliminary; CA (canceled, v2.6+) → entered-in-error.
pub fn document_status(v2: &str) -> Option<&'static str> {
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "AU" | "LA" => "final",
        "DI" | "DO" | "IN" | "IP" | "PA" => "preliminary",
        "CA" => "entered-in-error",
        _ => return None,
    })
}

/// Table 0275 (TXA-19) → `DocumentReference.status`. IG: AV → current (and current when
/// TXA-19 is empty, which the caller handles); for CA/OB/UN the IG only adds the v2 code as
/// an alternate code, so we choose: OB (obsolete) → superseded, CA (canceled) →
/// entered-in-error, UN (unavailable) → current.
pub fn document_availability(v2: &str) -> Option<&'static str> {
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "AV" | "UN" => "current",
        "OB" => "superseded",
        "CA" => "entered-in-error",
        _ => return None,
    })
}

/// Table 0322 (RXA-20) → `Immunization.status` (IG CompletionStatus).
pub fn immunization_status(v2: &str) -> Option<&'static str> {
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "CP" | "PA" => "completed",
        "RE" | "NA" => "not-done",
        _ => return None,
    })
}

/// Table 0063 (NK1-3, IN1-17, …) → the IG Relationship target: v3-RoleCode for family
/// relations, v2-0131 for the contact roles (care giver, employer, emergency contact, …).
pub fn relationship(v2: &str) -> Option<Code> {
    let r = |code, display| c(V3_ROLE_CODE, code, display);
    let v = |code, display| c(V2_0131, code, display);
    Some(match v2.trim().to_ascii_uppercase().as_str() {
        "SEL" => r("ONESELF", "self"),
        "SPO" => r("SPS", "spouse"),
        "DOM" => r("SIGOTHR", "significant other"),
        "CHD" => r("CHILD", "child"),
        "GCH" => r("GRNDCHILD", "grandchild"),
        "NCH" => r("NCHILD", "natural child"),
        "SCH" => r("STPCHLD", "step child"),
        "FCH" => r("CHLDFOST", "foster child"),
        "DEP" => v("DEP", "Handicapped dependent"),
        "WRD" => v("WRD", "Ward of court"),
        "PAR" => r("PRN", "parent"),
        "MTH" => r("MTH", "mother"),
        "FTH" => r("FTH", "father"),
        "CGV" => v("CGV", "Care giver"),
        "GRD" => v("GRD", "Guardian"),
        "GRP" => r("GRPRN", "grandparent"),
        "EXF" => r("EXT", "extended family member"),
        "SIB" => r("SIB", "sibling"),
        "BRO" => r("BRO", "brother"),
        "SIS" => r("SIS", "sister"),
        "FND" => r("FRND", "unrelated friend"),
        "OAD" => v("OAD", "Other adult"),
        "EME" => v("EME", "Employee"),
        "EMR" => v("E", "Employer"),
        "ASC" => v("ASC", "Associate"),
        "EMC" => v("C", "Emergency Contact"),
        "OWN" => v("OWN", "Owner"),
        "TRA" => v("TRA", "Trainer"),
        "MGR" => v("MGR", "Manager"),
        "NON" => v("NON", "None"),
        "UNK" => v("U", "Unknown"),
        "OTH" => v("O", "Other"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coding_systems_from_table_0396() {
        assert_eq!(coding_system_uri("LN"), Some(LOINC));
        assert_eq!(coding_system_uri("ln"), Some(LOINC));
        assert_eq!(coding_system_uri("SNM"), Some(SNOMED));
        assert_eq!(coding_system_uri("SNOMEDCT"), Some(SNOMED));
        assert_eq!(coding_system_uri("I10"), Some("http://hl7.org/fhir/sid/icd-10"));
        assert_eq!(coding_system_uri("ICD10CM"), Some("http://hl7.org/fhir/sid/icd-10-cm"));
        assert_eq!(coding_system_uri("I9C"), Some("http://hl7.org/fhir/sid/icd-9-cm"));
        assert_eq!(coding_system_uri("C4"), Some("http://www.ama-assn.org/go/cpt"));
        assert_eq!(coding_system_uri("RXN"), Some("http://www.nlm.nih.gov/research/umls/rxnorm"));
        assert_eq!(coding_system_uri("NDC"), Some("http://hl7.org/fhir/sid/ndc"));
        assert_eq!(coding_system_uri("CVX"), Some("http://hl7.org/fhir/sid/cvx"));
        assert_eq!(coding_system_uri("MVX"), Some("http://terminology.hl7.org/CodeSystem/MVX"));
        assert_eq!(coding_system_uri("UCUM"), Some(UCUM));
        assert_eq!(coding_system_uri("HL70078"), Some("http://terminology.hl7.org/CodeSystem/v2-0078"));
        assert_eq!(coding_system_uri("HL7-0203"), Some(V2_0203));
        assert_eq!(coding_system_uri("L"), None);
        assert_eq!(coding_system_uri("99LAB"), None);
        assert_eq!(coding_system_uri("HL79999"), None);
        assert_eq!(coding_system_uri(""), None);
    }

    #[test]
    fn v2_tables() {
        assert_eq!(v2_table_system("0203"), V2_0203);
        assert_eq!(v2_table_system("203"), V2_0203);
        assert_eq!(v2_table_system("HL70203"), V2_0203);
        // Every static table URI agrees with the formatter.
        for t in V2_TABLES {
            assert_eq!(&v2_table_system(&t[t.len() - 4..]), t);
        }
        assert!(is_standard_system(LOINC));
        assert!(is_standard_system("http://terminology.hl7.org/CodeSystem/v2-0203"));
        assert!(!is_standard_system("urn:oid:1.2.3"));
    }

    #[test]
    fn table_maps_follow_the_ig() {
        assert_eq!(administrative_sex("F"), Some("female"));
        assert_eq!(administrative_sex("m"), Some("male"));
        assert_eq!(administrative_sex("A"), Some("other"));
        assert_eq!(administrative_sex("U"), Some("unknown"));
        assert_eq!(administrative_sex("X"), None);
        assert_eq!(name_use("L"), Some("official"));
        assert_eq!(name_use("B"), None);
        assert_eq!(address_use("H"), Some("home"));
        assert_eq!(address_type("M"), Some("postal"));
        assert_eq!(address_use("M"), None);
        assert_eq!(telecom_use("PRN"), Some("home"));
        assert_eq!(telecom_system("Internet"), Some("email"));
        assert_eq!(telecom_system("CP"), Some("phone"));
        assert_eq!(telecom_equipment_use("CP"), Some("mobile"));
        assert_eq!(marital_status("G").unwrap().code, "T");
        assert_eq!(marital_status("M").unwrap().system, V3_MARITAL);
        assert_eq!(observation_status("F"), Some("final"));
        assert_eq!(observation_status("W"), Some("entered-in-error"));
        assert_eq!(observation_status("N"), None);
        assert_eq!(result_status("R"), Some("partial"));
        assert_eq!(result_status("Y"), None);
        assert_eq!(interpretation("HH").unwrap().code, "HH");
        assert_eq!(interpretation("TOX"), None);
        assert_eq!(allergy_category("DA"), Some("medication"));
        assert_eq!(allergy_criticality("MO"), None);
        assert_eq!(reaction_severity("MO"), Some("moderate"));
        assert_eq!(encounter_class("I").unwrap().code, "IMP");
        assert_eq!(encounter_class("O").unwrap().code, "AMB");
        assert_eq!(encounter_class("E").unwrap().code, "EMER");
        assert_eq!(encounter_class("P").unwrap().code, "PRENC");
        assert_eq!(encounter_class("R").unwrap(), c(V2_0004, "R", "Recurring patient"));
        assert_eq!(order_control_status("NW"), Some("active"));
        assert_eq!(order_control_status("OC"), Some("revoked"));
        assert_eq!(order_control_status("SC"), None);
        assert_eq!(order_intent("NW"), "order");
        assert_eq!(order_status("CM"), Some("completed"));
        assert_eq!(appointment_status("Booked"), Some("booked"));
        assert_eq!(appointment_status("COMPLETE"), Some("fulfilled"));
        assert_eq!(document_status("AU"), Some("final"));
        assert_eq!(document_availability("AV"), Some("current"));
        assert_eq!(immunization_status("RE"), Some("not-done"));
        assert_eq!(relationship("MTH").unwrap().system, V3_ROLE_CODE);
        assert_eq!(relationship("EMC").unwrap(), c(V2_0131, "C", "Emergency Contact"));
        assert_eq!(relationship("XYZ"), None);
    }

    #[test]
    fn codings_and_identifier_types() {
        let m = marital_status("S").unwrap();
        assert_eq!(
            m.concept(),
            serde_json::json!({"coding":[{"system":V3_MARITAL,"code":"S","display":"Never Married"}]})
        );
        assert_eq!(identifier_type("MR"), serde_json::json!({"coding":[{"system":V2_0203,"code":"MR"}]}));
        assert_eq!(identifier_type(""), Value::Null);
    }
}
