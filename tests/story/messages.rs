//! The HL7 v2.5 messages of the story tests, built field by field: one clinical story per
//! patient, and the updates of the 40-patient and placeholder-SSN tests.

pub const GP: &str = "4455^Nguyen^Tam^^^Dr^MD^^NPI";
pub const ATTENDING: &str = "1234^Welby^Marcus^^^Dr^MD^^NPI";
pub const ORDERING: &str = "5678^Kildare^James^^^Dr^MD^^NPI";
pub const NURSE: &str = "9012^Nurse^Nina^^^^RN^^NPI";
/// Distinct practitioners, organizations (sending facility, payor, vaccine manufacturer) and
/// shared locations across all stories: each PL is a chain of Locations (bed → room → unit →
/// facility), so the facility SITEHOSP, the ward W1, and the exam room's unit CARDCL and room
/// EXAM4 are shared; each story has its own room and bed ([`LOCATIONS_PER_STORY`]).
pub const PRACTITIONERS: usize = 4;
pub const ORGANIZATIONS: usize = 3;
pub const SHARED_LOCATIONS: usize = 4;
pub const LOCATIONS_PER_STORY: usize = 2;

/// A segment with `fields` at their (1-based) positions, the others empty.
pub fn seg(id: &str, fields: &[(usize, &str)]) -> String {
    let last = fields.iter().map(|(n, _)| *n).max().unwrap_or(0);
    let mut v = vec![""; last];
    for &(n, text) in fields {
        v[n - 1] = text;
    }
    format!("{id}|{}\r", v.join("|"))
}

pub fn msh(app: &str, time: &str, kind: &str, control_id: &str) -> String {
    format!("MSH|^~\\&|{app}|SITEHOSP|HL7GW|FHIRHUB|{time}||{kind}|{control_id}|P|2.5|||AL|NE\r")
}

pub fn evn(code: &str, time: &str) -> String {
    seg("EVN", &[(1, code), (2, time)])
}

/// `2026-03-<day> <hhmm>` in the site's offset, as a v2 DTM.
fn ts(day: u32, hhmm: &str) -> String {
    format!("202603{day:02}{hhmm}00-0500")
}

pub fn mrn(n: usize) -> String {
    format!("P{n}")
}

/// The duplicate record of story `n`'s patient, merged into it by the A40.
pub fn dup_mrn(n: usize) -> String {
    format!("Q{n}")
}

pub fn visit(n: usize) -> String {
    format!("V{n}")
}

pub fn ssn(n: usize) -> String {
    format!("900-11-{n:04}")
}

/// The home phone's local number before and after the A08 (`new`).
pub fn home_phone(n: usize, new: bool) -> String {
    format!("{}{n:04}", if new { 556 } else { 555 })
}

fn bed(n: usize) -> String {
    format!("W1^{}^A^SITEHOSP", 100 + n)
}

/// PID with the full demographics an ADT carries.
fn pid_full(n: usize, new_phone: bool) -> String {
    seg(
        "PID",
        &[
            (1, "1"),
            (3, &format!("{}^^^SITEHOSP^MR", mrn(n))),
            (5, &format!("Story{n}^Pat^Q")),
            (7, "19800101"),
            (8, "F"),
            (11, &format!("{n} Main St^^Springfield^IL^62704^USA^H")),
            (13, &format!("^PRN^PH^^1^217^{}", home_phone(n, new_phone))),
            (14, "^WPN^PH^^1^217^5550100"),
            (15, "eng^English^ISO6392"),
            (16, "M^Married^HL70002"),
            (18, &format!("A{n}^^^SITEHOSP^AN")),
            (19, &ssn(n)),
        ],
    )
}

/// PID as lab, document, scheduling and immunization feeds send it: identity and name only.
fn pid_short(n: usize) -> String {
    seg(
        "PID",
        &[
            (1, "1"),
            (3, &format!("{}^^^SITEHOSP^MR", mrn(n))),
            (5, &format!("Story{n}^Pat^Q")),
            (7, "19800101"),
            (8, "F"),
        ],
    )
}

/// PV1 of the ADTs: class, bed, attending, visit number, admit time and, once discharged,
/// disposition and discharge time.
fn pv1_adt(n: usize, class: &str, discharged: bool) -> String {
    let admit = ts(10, "0800");
    let end = ts(13, "1045");
    let mut fields = vec![(1, "1"), (2, class), (10, "MED"), (14, "7"), (18, "IP"), (44, admit.as_str())];
    let (b, v) = (bed(n), format!("{}^^^SITEHOSP^VN", visit(n)));
    fields.extend([(3, b.as_str()), (7, ATTENDING), (19, v.as_str())]);
    if discharged {
        fields.extend([(36, "01^Discharged to home^HL70112"), (45, end.as_str())]);
    }
    seg("PV1", &fields)
}

/// PV1 as the other feeds send it: class, bed, visit number.
fn pv1_ref(n: usize) -> String {
    seg("PV1", &[(1, "1"), (2, "I"), (3, &bed(n)), (19, &format!("{}^^^SITEHOSP^VN", visit(n)))])
}

/// Everything an ADT of story `n` carries besides MSH/EVN/PID/PV1.
fn adt_rest(n: usize) -> (String, String) {
    let pd1 = seg("PD1", &[(4, GP)]);
    let nk1 = seg(
        "NK1",
        &[
            (1, "1"),
            (2, &format!("Story{n}^Sam")),
            (3, "SPO^Spouse^HL70063"),
            (4, &format!("{n} Main St^^Springfield^IL^62704^USA^H")),
            (5, "^PRN^PH^^1^217^5550199"),
            (7, "EC^Emergency Contact^HL70131"),
        ],
    );
    let clinical = [
        seg(
            "AL1",
            &[
                (1, "1"),
                (2, "DA^Drug allergy^HL70127"),
                (3, "7980^Penicillin G^RXNORM"),
                (4, "SV^Severe^HL70128"),
                (5, "Anaphylaxis"),
                (6, "20100101"),
            ],
        ),
        seg(
            "AL1",
            &[
                (1, "2"),
                (2, "FA^Food allergy^HL70127"),
                (3, "91935009^Allergy to peanut^SCT"),
                (4, "MO^Moderate^HL70128"),
            ],
        ),
        seg("DG1", &[(1, "1"), (3, "R07.9^Chest pain, unspecified^I10"), (5, "20260310"), (6, "A^Admitting^HL70052")]),
        seg(
            "IN1",
            &[
                (1, "1"),
                (2, "PPO^Preferred Provider Organization^HL70072"),
                (3, "AHP01^^^^NIIP"),
                (4, "Acme Health Plan (FAKE)"),
                (5, "PO Box 1^^Springfield^IL^62704"),
                (8, "GRP-100"),
                (12, "20260101"),
                (13, "20261231"),
                (16, &format!("Story{n}^Pat^Q")),
                (17, "SEL^Self^HL70063"),
                (18, "19800101"),
                (36, &format!("W{n}")),
            ],
        ),
    ]
    .concat();
    (format!("{pd1}{nk1}"), clinical)
}

/// An ADT of story `n` with the A01 structure (A04, A01, A08; A03 with its own structure).
fn adt(n: usize, id: &str, event: &str, time: &str, class: &str, new_phone: bool, discharged: bool) -> String {
    let structure = if event == "A03" { "ADT_A03" } else { "ADT_A01" };
    let (pd1_nk1, clinical) = adt_rest(n);
    format!(
        "{}{}{}{pd1_nk1}{}{clinical}",
        msh("ADT1", time, &format!("ADT^{event}^{structure}"), id),
        evn(event, time),
        pid_full(n, new_phone),
        pv1_adt(n, class, discharged)
    )
}

/// ORU^R01 of story `n`'s chemistry order: sodium and troponin. `status` is OBR-25 and OBX-11
/// (`P`, `F`; `C` corrects the sodium from 182 to 128, the troponin stays final).
fn oru(n: usize, id: &str, time: &str, status: &str) -> String {
    let placer = format!("PL{n}^SITEHOSP");
    let filler = format!("F{n}^LAB");
    let collected = ts(10, "1030");
    let (sodium, sodium_flag, sodium_status, troponin_status) = match status {
        "C" => ("128", "L", "C", "F"),
        s => ("182", "HH", s, s),
    };
    let orc = seg(
        "ORC",
        &[
            (1, "RE"),
            (2, &placer),
            (3, &filler),
            (5, if status == "P" { "IP" } else { "CM" }),
            (9, time),
            (12, ORDERING),
        ],
    );
    let obr = seg(
        "OBR",
        &[
            (1, "1"),
            (2, &placer),
            (3, &filler),
            (4, "CPPNL^Chest pain panel^L"),
            (7, &collected),
            (16, ORDERING),
            (22, time),
            (24, "CH"),
            (25, status),
        ],
    );
    let obx = |set: &str, code: &str, value: &str, units: &str, range: &str, flag: &str, st: &str| {
        seg(
            "OBX",
            &[
                (1, set),
                (2, "NM"),
                (3, code),
                (4, "1"),
                (5, value),
                (6, units),
                (7, range),
                (8, flag),
                (11, st),
                (14, &collected),
            ],
        )
    };
    format!(
        "{}{}{}{orc}{obr}{}{}",
        msh("LAB", time, "ORU^R01^ORU_R01", id),
        pid_short(n),
        pv1_ref(n),
        obx(
            "1",
            "2951-2^Sodium [Moles/volume] in Serum or Plasma^LN",
            sodium,
            "mmol/L^^UCUM",
            "136-145",
            sodium_flag,
            sodium_status
        ),
        obx(
            "2",
            "6598-7^Troponin T.cardiac [Mass/volume] in Serum or Plasma^LN",
            "0.05",
            "ng/mL^^UCUM",
            "<0.01",
            "H",
            troponin_status
        ),
    )
}

/// MDM^T02: a progress note with its unique document number (TXA-12).
fn mdm(n: usize, id: &str, time: &str) -> String {
    let doc = format!("DOC{n}^SITEHOSP");
    let txa = seg(
        "TXA",
        &[
            (1, "1"),
            (2, "PN^Progress note^HL70270"),
            (3, "TX"),
            (4, time),
            (5, ORDERING),
            (6, time),
            (7, time),
            (9, ORDERING),
            (12, &doc),
            (17, "AU"),
            (19, "AV"),
        ],
    );
    let line = |set: &str, text: &str| {
        seg("OBX", &[(1, set), (2, "TX"), (3, "11506-3^Progress note^LN"), (4, set), (5, text), (11, "F")])
    };
    format!(
        "{}{}{}{}{txa}{}{}",
        msh("DOCS", time, "MDM^T02^MDM_T02", id),
        evn("T02", time),
        pid_short(n),
        pv1_ref(n),
        line("1", "Chest pain resolved overnight."),
        line("2", "Plan: discharge tomorrow, cardiology follow-up."),
    )
}

/// SIU^S12 (booked) or SIU^S15 (cancelled) of the follow-up appointment (SCH-1/SCH-2 ids).
fn siu(n: usize, id: &str, time: &str, cancel: bool) -> String {
    let (start, end) = ("20260401100000-0500", "20260401103000-0500");
    let (event, reason, filler_status, resource_status) = if cancel {
        ("S15", "PATCAN^Patient cancelled^L", "Cancelled^Cancelled^HL70278", "Cancelled")
    } else {
        ("S12", "NEW^New appointment^L", "Booked^Booked^HL70278", "Booked")
    };
    let timing = format!("^^30^{start}^{end}");
    let sch = seg(
        "SCH",
        &[
            (1, &format!("APT{n}^SITEHOSP")),
            (2, &format!("SAPT{n}^SITEHOSP")),
            (6, reason),
            (7, "FU^Follow-up^L"),
            (8, "ROUTINE^Routine^HL70276"),
            (9, "30"),
            (10, "min^minutes^UCUM"),
            (11, &timing),
            (16, ORDERING),
            (25, filler_status),
        ],
    );
    let resource = |kind: &str, who: &str, role: &str| {
        seg(
            kind,
            &[
                (1, "1"),
                (3, who),
                (4, role),
                (6, start),
                (7, "0"),
                (8, "min"),
                (9, "30"),
                (10, "min"),
                (12, resource_status),
            ],
        )
    };
    format!(
        "{}{sch}{}{}{}{}{}",
        msh("SCHED", time, &format!("SIU^{event}^SIU_S12"), id),
        pid_short(n),
        pv1_ref(n),
        seg("RGS", &[(1, "1")]),
        resource("AIL", "CARDCL^EXAM4^^SITEHOSP", "EXAM^Exam room^L"),
        resource("AIP", ORDERING, "ATND^Attending^L"),
    )
}

/// VXU^V04: one influenza vaccination (CVX 140), filler order id in ORC-3.
fn vxu(n: usize, id: &str, time: &str) -> String {
    let given = ts(13, "1000");
    let orc = seg("ORC", &[(1, "RE"), (3, &format!("IZ{n}^SITEHOSP")), (12, ORDERING)]);
    let rxa = seg(
        "RXA",
        &[
            (1, "0"),
            (2, "1"),
            (3, &given),
            (5, "140^Influenza, seasonal, injectable, preservative free^CVX"),
            (6, "0.5"),
            (7, "mL^milliliters^UCUM"),
            (9, "00^New immunization record^NIP001"),
            (10, NURSE),
            (15, "FLU2026A"),
            (16, "20270131"),
            (17, "SKB^GlaxoSmithKline^MVX"),
            (20, "CP"),
            (21, "A"),
        ],
    );
    let rxr = seg("RXR", &[(1, "C28161^Intramuscular^NCIT"), (2, "LD^Left Deltoid^HL70163")]);
    format!("{}{}{}{orc}{rxa}{rxr}", msh("IMM", time, "VXU^V04^VXU_V04", id), pid_short(n), pv1_ref(n))
}

/// A04 of the duplicate record (its own MRN, no visit: a pseudo PV1).
fn a04_duplicate(n: usize, id: &str, time: &str) -> String {
    let pid = seg(
        "PID",
        &[
            (1, "1"),
            (3, &format!("{}^^^SITEHOSP^MR", dup_mrn(n))),
            (5, &format!("Story{n}^Patty")),
            (7, "19800101"),
            (8, "F"),
            (11, &format!("{n} Main Street^^Springfield^IL^62704^USA^H")),
        ],
    );
    format!(
        "{}{}{pid}{}",
        msh("ADT1", time, "ADT^A04^ADT_A01", id),
        evn("A04", time),
        seg("PV1", &[(1, "1"), (2, "N")])
    )
}

/// A40: the duplicate record merged into the patient (full demographics, discharged visit).
fn a40(n: usize, id: &str, time: &str) -> String {
    format!(
        "{}{}{}{}{}{}",
        msh("ADT1", time, "ADT^A40^ADT_A39", id),
        evn("A40", time),
        pid_full(n, true),
        seg("PD1", &[(4, GP)]),
        seg("MRG", &[(1, &format!("{}^^^SITEHOSP^MR", dup_mrn(n)))]),
        pv1_adt(n, "I", true)
    )
}

/// One message of a story.
#[derive(Clone)]
pub struct Msg {
    pub step: &'static str,
    pub raw: Vec<u8>,
}

/// Story `n` in send order, control IDs `<run>-<n>-<step>`.
pub fn story(n: usize, run: &str) -> Vec<Msg> {
    let id = |step: &str| format!("{run}-{n}-{step}");
    let m = |step: &'static str, text: String| Msg { step, raw: text.into_bytes() };
    vec![
        m("A04", adt(n, &id("A04"), "A04", &ts(10, "0800"), "E", false, false)),
        m("A01", adt(n, &id("A01"), "A01", &ts(10, "1000"), "I", false, false)),
        m("ORU-P", oru(n, &id("ORUP"), &ts(10, "1100"), "P")),
        m("ORU-F", oru(n, &id("ORUF"), &ts(10, "1300"), "F")),
        m("ORU-C", oru(n, &id("ORUC"), &ts(11, "0900"), "C")),
        m("A08-phone", adt(n, &id("A08a"), "A08", &ts(11, "1200"), "I", true, false)),
        m("MDM-T02", mdm(n, &id("MDM"), &ts(12, "0900"))),
        m("A03", adt(n, &id("A03"), "A03", &ts(13, "1100"), "I", true, true)),
        m("SIU-S12", siu(n, &id("S12"), &ts(14, "0900"), false)),
        m("SIU-S15", siu(n, &id("S15"), &ts(20, "0900"), true)),
        m("VXU", vxu(n, &id("VXU"), &ts(20, "1000"))),
        m("A04-dup", a04_duplicate(n, &id("A04Q"), &ts(21, "0800"))),
        m("A40", a40(n, &id("A40"), &ts(22, "0900"))),
        m("A08-after-merge", adt(n, &id("A08b"), "A08", &ts(23, "0900"), "I", true, true)),
    ]
}

/// Messages of the first pass that go after the duplicate's A04 has been delivered (a merge
/// comes long after the registration it merges).
pub const AFTER_MERGE: usize = 2;

/// Stories `1..=count`.
pub fn stories(run: &str, count: usize) -> Vec<Vec<Msg>> {
    (1..=count).map(|n| story(n, run)).collect()
}

/// Message `i` of every story, then `i + 1`, …
pub fn round_robin(stories: &[Vec<Msg>]) -> Vec<Msg> {
    let longest = stories.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest).flat_map(|i| stories.iter().filter_map(move |s| s.get(i).cloned())).collect()
}

/// The stories interleaved in a seeded random order, each story's own order kept.
pub fn shuffled(stories: &[Vec<Msg>], seed: u64) -> Vec<Msg> {
    let mut state = seed;
    let mut next = || {
        // xorshift64: deterministic, no dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut at = vec![0; stories.len()];
    let mut out = Vec::new();
    loop {
        let open: Vec<usize> = (0..stories.len()).filter(|&s| at[s] < stories[s].len()).collect();
        if open.is_empty() {
            return out;
        }
        let s = open[(next() % open.len() as u64) as usize];
        out.push(stories[s][at[s]].clone());
        at[s] += 1;
    }
}

/// A01 (`update` 0) or A08 of patient `p` under the unmapped authority `CLINIC7`; the given
/// name carries the update number.
pub fn update(p: usize, update: usize, control_id: &str) -> Vec<u8> {
    let event = if update == 0 { "A01" } else { "A08" };
    let time = format!("202604{:02}0900{update:02}-0500", 1 + update);
    let pid = seg(
        "PID",
        &[
            (1, "1"),
            (3, &format!("M{p}^^^CLINIC7^MR")),
            (5, &format!("Forty{p}^P{p}U{update}")),
            (7, "19700101"),
            (8, "M"),
        ],
    );
    let pv1 = seg(
        "PV1",
        &[
            (1, "1"),
            (2, "I"),
            (3, "W2^201^B^SITEHOSP"),
            (7, ATTENDING),
            (19, &format!("FV{p}^^^CLINIC7^VN")),
            (44, "20260401080000-0500"),
        ],
    );
    format!("{}{}{pid}{pv1}", msh("ADT1", &time, &format!("ADT^{event}^ADT_A01"), control_id), evn(event, &time))
        .into_bytes()
}

/// A01 of a patient under the unmapped authority `CLINIC7` with the placeholder SSN
/// `999-99-9999` in PID-19 (`i` makes the control ID and time).
pub fn placeholder_ssn_a01(i: usize, mrn: &str, name: &str, sex: &str) -> Vec<u8> {
    let time = format!("2026040509{i:02}00-0500");
    let pid = seg(
        "PID",
        &[(1, "1"), (3, &format!("{mrn}^^^CLINIC7^MR")), (5, name), (7, "19700101"), (8, sex), (19, "999-99-9999")],
    );
    let pv1 = seg("PV1", &[(1, "1"), (2, "I"), (3, "W2^202^A^SITEHOSP"), (19, &format!("SV{mrn}^^^CLINIC7^VN"))]);
    format!("{}{}{pid}{pv1}", msh("ADT1", &time, "ADT^A01^ADT_A01", &format!("SSN{i}")), evn("A01", &time)).into_bytes()
}
