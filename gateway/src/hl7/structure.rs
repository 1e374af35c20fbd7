//! Segment groups: which message structure a message has, and its segments arranged in the
//! groups of that structure (`PATIENT_RESULT`, `ORDER_OBSERVATION`, …).
//!
//! This module owns `Structure` (the supported subset of HL7 table 0354 and how a message's
//! structure is determined), the grammars of those structures (`GroupDef`), and the tolerant
//! matcher [`group`] that turns a message's flat segment list into a [`Grouped`] tree.
//!
//! # Grammars
//! Each structure's grammar is the union of the HL7 v2.5.1 definition and the v2-to-FHIR
//! implementation guide's (v2.9-based) one: a segment is allowed where either version allows
//! it, with the looser cardinality. Group names follow the guide (`NEXT_OF_KIN`,
//! `OBSERVATION`, `PATIENT_VISIT`, …). Deliberate departures:
//! - ORU_R01: ORC sits directly in `ORDER_OBSERVATION` and `SPECIMEN` is `{SPM, OBX*}` (the
//!   v2.5.1 shape); the v2.9 `COMMON_ORDER`/`ORDER_DOCUMENT` and `SPECIMEN_OBSERVATION`
//!   subgroups are not modelled.
//! - OML_O21: `PRIOR_RESULT` is not modelled. Its first set (PID, PV1, AL1, ORC, OBR)
//!   overlaps the next `ORDER`, so a greedy matcher would take every further order for a
//!   prior result. `SPECIMEN` is `{SPM, OBX*, CONTAINER*{SAC, OBX*}}` (v2.5.1).
//! - ADT_A03: an `OBSERVATION` group is accepted both after DB1 (where A01 has it, which
//!   senders often reuse) and after `PROCEDURE` (where A03 has it).
//! - VXU_V04: ORC is optional in `ORDER` (as it was before v2.5).
//! - ADT_A24: its two patients, each `PID, PD1?, PV1?, DB1*`, are `PATIENT` groups (HL7 lists
//!   the segments twice, ungrouped), so each PV1 stays with its PID.
//! - ADT_A15 and ADT_A21: OBX in `OBSERVATION` groups, as the other ADT structures.
//! - ADT_A17 and ADT_A37: each patient's segments are a `PATIENT` group (as ADT_A24).
//! - BAR_P01 (also P05, whose BAR_P05 is the same in v2.5): `VISIT` begins with PV1 (optional in
//!   HL7, which would leave the group without an anchor).
//! - DFT_P03/P11: the `FINANCIAL` subgroups are `FINANCIAL_PROCEDURE`, `FINANCIAL_COMMON_ORDER`
//!   (`FINANCIAL_ORDER`, `FINANCIAL_OBSERVATION`) and, in P11, `FINANCIAL_INSURANCE`, so their
//!   names differ from the message-level ones.
//! - RDS_O13: the `ENCODING` group's TIMING_ENCODED and RXR are optional.
//! - OMG_O19: OBR and what follows it are an `OBSERVATION_REQUEST` group, as in OML_O21;
//!   `PRIOR_RESULT` is not modelled (for the reason given for OML_O21).
//! - PPR_PC1: `PATHWAY`, `GOAL` and `ORDER` are accepted but not mapped.
//!
//! # Matching
//! Greedy, one segment of look-ahead, no backtracking, linear in the number of segments. A
//! segment goes to the first place it may occur at or after the current position of the
//! innermost open group; failing that, of the enclosing groups, outwards (closing the inner
//! ones; a repeating group starts a new instance). A segment that fits nowhere is reported in
//! `Grouped::unconsumed` and the position stays where it was. Z-segments are placed in the
//! group open when they occur (a site extension usually follows the segment it extends) and
//! also listed in `Grouped::zsegments`. Required segments and groups that never showed up
//! are listed in `Grouped::missing`; none of this is an error.

#[cfg(test)]
use std::fmt::Write as _;

use super::error::{ErrorCode, Hl7Error, Location};
use super::parser::{Message, Segment};

/// How often an item may occur.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Card {
    /// Exactly once: `PID`.
    One,
    /// At most once: `[PD1]`.
    Optional,
    /// One or more: `{OBX}`.
    OneOrMore,
    /// Any number: `[{NTE}]`.
    ZeroOrMore,
}

impl Card {
    pub(crate) fn repeats(self) -> bool {
        matches!(self, Card::OneOrMore | Card::ZeroOrMore)
    }

    pub(crate) fn required(self) -> bool {
        matches!(self, Card::One | Card::OneOrMore)
    }
}

/// One entry of a group's grammar.
#[derive(Debug)]
pub(crate) enum Item {
    Segment(&'static str, Card),
    /// One of several segments (ORM_O01's `<OBR|RQD|RQ1|RXO|ODS|ODT>`).
    Choice(&'static [&'static str], Card),
    Group(&'static GroupDef, Card),
}

impl Item {
    pub(crate) fn card(&self) -> Card {
        match self {
            Item::Segment(_, c) | Item::Choice(_, c) | Item::Group(_, c) => *c,
        }
    }

    /// The segment ID, group name, or first alternative.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Item::Segment(id, _) => id,
            Item::Choice(ids, _) => ids.first().copied().unwrap_or_default(),
            Item::Group(def, _) => def.name,
        }
    }

    /// Whether a segment `id` can begin this item.
    fn starts_with(&self, id: &str) -> bool {
        match self {
            Item::Segment(s, _) => *s == id,
            Item::Choice(ids, _) => ids.contains(&id),
            Item::Group(def, _) => def.starts_with(id),
        }
    }
}

/// A group (or a whole message structure): a sequence of items.
#[derive(Debug)]
pub(crate) struct GroupDef {
    pub(crate) name: &'static str,
    pub(crate) items: &'static [Item],
}

impl GroupDef {
    /// Whether a segment `id` can begin this group: it begins one of the leading optional
    /// items or the first required one.
    fn starts_with(&self, id: &str) -> bool {
        for item in self.items {
            if item.starts_with(id) {
                return true;
            }
            if item.card().required() {
                return false;
            }
        }
        false
    }
}

/// Builds a `&'static [Item]` from HL7-like notation: `PID`, `PD1?`, `NTE*`, `OBX+`,
/// `NAME? [ …items… ]` for a group, `(OBR|RQD)` for a choice.
macro_rules! items {
    (@acc [$($out:expr),*]) => { &[$($out),*] };
    (@acc [$($out:expr),*] $name:ident [ $($g:tt)* ] $(, $($rest:tt)*)?) => {
        items!(@acc [$($out,)* items!(@group $name One [$($g)*])] $($($rest)*)?)
    };
    (@acc [$($out:expr),*] $name:ident ? [ $($g:tt)* ] $(, $($rest:tt)*)?) => {
        items!(@acc [$($out,)* items!(@group $name Optional [$($g)*])] $($($rest)*)?)
    };
    (@acc [$($out:expr),*] $name:ident * [ $($g:tt)* ] $(, $($rest:tt)*)?) => {
        items!(@acc [$($out,)* items!(@group $name ZeroOrMore [$($g)*])] $($($rest)*)?)
    };
    (@acc [$($out:expr),*] $name:ident + [ $($g:tt)* ] $(, $($rest:tt)*)?) => {
        items!(@acc [$($out,)* items!(@group $name OneOrMore [$($g)*])] $($($rest)*)?)
    };
    (@acc [$($out:expr),*] ( $($alt:ident)|+ ) $(, $($rest:tt)*)?) => {
        items!(@acc [$($out,)* Item::Choice(&[$(stringify!($alt)),+], Card::One)] $($($rest)*)?)
    };
    (@acc [$($out:expr),*] $name:ident ? $(, $($rest:tt)*)?) => {
        items!(@acc [$($out,)* Item::Segment(stringify!($name), Card::Optional)] $($($rest)*)?)
    };
    (@acc [$($out:expr),*] $name:ident * $(, $($rest:tt)*)?) => {
        items!(@acc [$($out,)* Item::Segment(stringify!($name), Card::ZeroOrMore)] $($($rest)*)?)
    };
    (@acc [$($out:expr),*] $name:ident + $(, $($rest:tt)*)?) => {
        items!(@acc [$($out,)* Item::Segment(stringify!($name), Card::OneOrMore)] $($($rest)*)?)
    };
    (@acc [$($out:expr),*] $name:ident $(, $($rest:tt)*)?) => {
        items!(@acc [$($out,)* Item::Segment(stringify!($name), Card::One)] $($($rest)*)?)
    };
    (@group $name:ident $card:ident [ $($g:tt)* ]) => {
        Item::Group(&GroupDef { name: stringify!($name), items: items!(@acc [] $($g)*) }, Card::$card)
    };
}

macro_rules! structure {
    ($name:ident = [ $($t:tt)* ]) => {
        static $name: GroupDef = GroupDef { name: stringify!($name), items: items!(@acc [] $($t)*) };
    };
}

structure!(ADT_A01 = [
    MSH, ARV*, SFT*, UAC?, EVN, PID, PD1?, OH1*, OH2*, OH3?, OH4*, ARV*, ROL*, PRT*,
    NEXT_OF_KIN*[NK1, OH2*, OH3?],
    PV1, PV2?, ARV*, ROL*, PRT*, DB1*,
    OBSERVATION*[OBX, PRT*],
    AL1*, IAM*, DG1*, DRG?,
    PROCEDURE*[PR1, ROL*, PRT*],
    GT1*,
    INSURANCE*[IN1, IN2?, IN3*, ROL*, PRT*, AUTHORIZATION*[AUT, PRT*], REFERRAL*[RF1, PRT*]],
    ACC?, UB1?, UB2?, PDA?
]);

structure!(ADT_A02 = [
    MSH, ARV*, SFT*, UAC?, EVN, PID, PD1?, OH1*, OH2*, OH3?, OH4*, ARV*, ROL*, PRT*,
    PV1, PV2?, ARV*, ROL*, PRT*, DB1*,
    OBSERVATION*[OBX, PRT*],
    PDA?
]);

structure!(ADT_A03 = [
    MSH, ARV*, SFT*, UAC?, EVN, PID, PD1?, OH1*, OH2*, OH3?, OH4*, ARV*, ROL*, PRT*,
    NEXT_OF_KIN*[NK1, OH2*, OH3?],
    PV1, PV2?, ARV*, ROL*, PRT*, DB1*,
    OBSERVATION*[OBX, PRT*],
    AL1*, IAM*, DG1*, DRG?,
    PROCEDURE*[PR1, ROL*, PRT*],
    OBSERVATION*[OBX, PRT*],
    GT1*,
    INSURANCE*[IN1, IN2?, IN3*, ROL*, PRT*, AUTHORIZATION*[AUT, PRT*], REFERRAL*[RF1, PRT*]],
    ACC?, PDA?
]);

structure!(ADT_A05 = [
    MSH, ARV*, SFT*, UAC?, EVN, PID, PD1?, OH1*, OH2*, OH3?, OH4*, ARV*, ROL*, PRT*,
    NEXT_OF_KIN*[NK1, OH2*, OH3?],
    PV1, PV2?, ARV*, ROL*, PRT*, DB1*,
    OBSERVATION*[OBX, PRT*],
    AL1*, IAM*, DG1*, DRG?,
    PROCEDURE*[PR1, ROL*, PRT*],
    GT1*,
    INSURANCE*[IN1, IN2?, IN3*, ROL*, PRT*, AUTHORIZATION*[AUT, PRT*], REFERRAL*[RF1, PRT*]],
    ACC?, UB1?, UB2?
]);

structure!(ADT_A06 = [
    MSH, ARV*, SFT*, UAC?, EVN, PID, PD1?, OH1*, OH2*, OH3?, OH4*, ARV*, ROL*, PRT*, MRG?,
    NEXT_OF_KIN*[NK1, OH2*, OH3?],
    PV1, PV2?, ARV*, ROL*, PRT*, DB1*,
    OBSERVATION*[OBX, PRT*],
    AL1*, IAM*, DG1*, DRG?,
    PROCEDURE*[PR1, ROL*, PRT*],
    GT1*,
    INSURANCE*[IN1, IN2?, IN3*, ROL*, PRT*],
    ACC?, UB1?, UB2?
]);

structure!(ADT_A09 = [
    MSH, ARV*, SFT*, UAC?, EVN, PID, PD1?, PV1, PV2?, DB1*,
    OBSERVATION*[OBX, PRT*],
    DG1*
]);

structure!(ADT_A15 = [
    MSH, ARV*, SFT*, UAC?, EVN, PID, PD1?, ARV*, ROL*, PRT*,
    PV1, PV2?, ARV*, ROL*, PRT*, DB1*,
    OBSERVATION*[OBX, PRT*],
    DG1*
]);

structure!(ADT_A16 = [
    MSH, ARV*, SFT*, UAC?, EVN, PID, PD1?, ARV*, ROL*, PRT*,
    NEXT_OF_KIN*[NK1, OH2*, OH3?],
    PV1, PV2?, ARV*, ROL*, PRT*, DB1*,
    OBSERVATION*[OBX, PRT*],
    AL1*, IAM*, DG1*, DRG?,
    PROCEDURE*[PR1, ROL*, PRT*],
    GT1*,
    INSURANCE*[IN1, IN2?, IN3*, ROL*, PRT*],
    ACC?
]);

structure!(ADT_A21 = [
    MSH, SFT*, UAC?, EVN, PID, PD1?, PV1, PV2?, DB1*,
    OBSERVATION*[OBX, PRT*]
]);

structure!(ADT_A24 = [
    MSH, SFT*, UAC?, EVN,
    PATIENT+[PID, PD1?, PV1?, DB1*]
]);

structure!(ADT_A30 = [
    MSH, SFT*, UAC?, EVN, PID, PD1?, ARV*, MRG
]);

structure!(ADT_A45 = [
    MSH, SFT*, UAC?, EVN, PID, PD1?,
    MERGE_INFO+[MRG, PV1]
]);

structure!(ADT_A60 = [
    MSH, SFT*, UAC?, EVN, PID, ARV*, PV1?, ARV*, PV2?, IAM*
]);

structure!(ADT_A39 = [
    MSH, SFT*, UAC?, EVN,
    PATIENT+[PID, PD1?, ARV*, MRG, PV1?, ARV*]
]);

structure!(ORU_R01 = [
    MSH, SFT*, UAC?,
    PATIENT_RESULT+[
        PATIENT?[
            PID, PD1?, PRT*, NTE*, NK1*, ARV*,
            PATIENT_OBSERVATION*[OBX, PRT*],
            VISIT?[PV1, PV2?, PRT*]
        ],
        ORDER_OBSERVATION+[
            ORC?, PRT*, OBR, NTE*, PRT*,
            TIMING_QTY*[TQ1, TQ2*],
            CTD?,
            OBSERVATION*[OBX, PRT*, NTE*],
            FT1*, CTI*,
            SPECIMEN*[SPM, OBX*]
        ]
    ],
    DSC?
]);

structure!(ORM_O01 = [
    MSH, SFT*, NTE*,
    PATIENT?[
        PID, PD1?, NTE*,
        PATIENT_VISIT?[PV1, PV2?],
        INSURANCE*[IN1, IN2?, IN3?],
        GT1?, AL1*
    ],
    ORDER+[
        ORC,
        ORDER_DETAIL?[
            (OBR|RQD|RQ1|RXO|ODS|ODT),
            NTE*, CTD?, DG1*,
            OBSERVATION*[OBX, NTE*]
        ],
        FT1*, CTI*, BLG?
    ]
]);

structure!(OML_O21 = [
    MSH, SFT*, UAC?, NTE*,
    PATIENT?[
        PID, PD1?, PRT*, NTE*, NK1*, ARV*,
        PATIENT_VISIT?[PV1, PV2?, PRT*],
        INSURANCE*[IN1, IN2?, IN3?],
        GT1?, AL1*
    ],
    ORDER+[
        ORC, PRT*,
        TIMING*[TQ1, TQ2*],
        OBSERVATION_REQUEST?[
            OBR, TCD?, NTE*, PRT*, CTD?, DG1*,
            OBSERVATION*[OBX, PRT*, TCD?, NTE*],
            SPECIMEN*[SPM, OBX*, CONTAINER*[SAC, OBX*]],
            SGH?, SGT?
        ],
        FT1*, CTI*, BLG?
    ]
]);

structure!(SIU_S12 = [
    MSH, SFT*, UAC?, SCH, TQ1*, NTE*,
    PATIENT*[PID, PD1?, PV1?, PV2?, OBX*, DG1*],
    RESOURCES+[
        RGS,
        SERVICE*[AIS, NTE*],
        GENERAL_RESOURCE*[AIG, NTE*],
        LOCATION_RESOURCE*[AIL, NTE*],
        PERSONNEL_RESOURCE*[AIP, NTE*]
    ]
]);

structure!(MDM_T02 = [
    MSH, SFT*, UAC?, EVN, PID, PV1,
    COMMON_ORDER*[ORC, TIMING*[TQ1, TQ2*], OBR, NTE*],
    TXA, CON*,
    OBSERVATION+[OBX, NTE*]
]);

structure!(VXU_V04 = [
    MSH, SFT*, UAC?, PID, PD1?, NK1*, ARV*,
    PATIENT_VISIT?[PV1, PV2?, ARV*],
    GT1*,
    INSURANCE*[IN1, IN2?, IN3?],
    PERSON_OBSERVATION*[OBX, PRT*, NTE*],
    ORDER*[
        ORC?, PRT*,
        TIMING*[TQ1, TQ2*],
        RXA, RXR?,
        OBSERVATION*[OBX, PRT*, NTE*]
    ]
]);

structure!(ADT_A17 = [
    MSH, SFT*, UAC?, EVN,
    PATIENT+[PID, PD1?, ARV*, PV1, PV2?, DB1*, OBSERVATION*[OBX, PRT*]]
]);

structure!(ADT_A37 = [
    MSH, SFT*, UAC?, EVN,
    PATIENT+[PID, PD1?, PV1?, DB1*]
]);

structure!(MDM_T01 = [
    MSH, SFT*, UAC?, EVN, PID, PV1,
    COMMON_ORDER*[ORC, TIMING*[TQ1, TQ2*], OBR, NTE*],
    TXA, CON*
]);

structure!(BAR_P01 = [
    MSH, SFT*, UAC?, EVN, PID, PD1?, ARV*, ROL*,
    VISIT+[
        PV1, PV2?, ARV*, ROL*, DB1*, OBX*, AL1*, DG1*, DRG?,
        PROCEDURE*[PR1, ROL*],
        GT1*, NK1*,
        INSURANCE*[IN1, IN2?, IN3*, ROL*],
        ACC?, UB1?, UB2?, ABS?, BLC*, RMI?
    ]
]);

structure!(BAR_P06 = [
    MSH, SFT*, UAC?, EVN,
    PATIENT+[PID, PV1?]
]);

structure!(DFT_P03 = [
    MSH, SFT*, UAC?, EVN, PID, PD1?, ROL*, PV1?, PV2?, ROL*, DB1*,
    COMMON_ORDER*[ORC, TIMING_QUANTITY*[TQ1, TQ2*], ORDER?[OBR, NTE*], OBSERVATION*[OBX, NTE*]],
    FINANCIAL+[
        FT1, NTE*,
        FINANCIAL_PROCEDURE*[PR1, ROL*],
        FINANCIAL_COMMON_ORDER*[ORC, FINANCIAL_TIMING_QUANTITY*[TQ1, TQ2*], FINANCIAL_ORDER?[OBR, NTE*],
            FINANCIAL_OBSERVATION*[OBX, NTE*]]
    ],
    DG1*, DRG?, GT1*,
    INSURANCE*[IN1, IN2?, IN3*, ROL*],
    ACC?
]);

structure!(DFT_P11 = [
    MSH, SFT*, UAC?, EVN, PID, PD1?, ROL*, PV1?, PV2?, ROL*, DB1*,
    COMMON_ORDER*[ORC, TIMING_QUANTITY*[TQ1, TQ2*], ORDER?[OBR, NTE*], OBSERVATION*[OBX, NTE*]],
    DG1*, DRG?, GT1*,
    INSURANCE*[IN1, IN2?, IN3*, ROL*],
    ACC?,
    FINANCIAL+[
        FT1, NTE*,
        FINANCIAL_PROCEDURE*[PR1, ROL*],
        FINANCIAL_COMMON_ORDER*[ORC, FINANCIAL_TIMING_QUANTITY*[TQ1, TQ2*], FINANCIAL_ORDER?[OBR, NTE*],
            FINANCIAL_OBSERVATION*[OBX, NTE*]],
        DG1*, DRG?, GT1*,
        FINANCIAL_INSURANCE*[IN1, IN2?, IN3*, ROL*]
    ]
]);

structure!(RDE_O11 = [
    MSH, SFT*, UAC?, NTE*,
    PATIENT?[
        PID, PD1?, NTE*,
        PATIENT_VISIT?[PV1, PV2?],
        INSURANCE*[IN1, IN2?, IN3?],
        GT1?, AL1*
    ],
    ORDER+[
        ORC,
        TIMING*[TQ1, TQ2*],
        ORDER_DETAIL?[RXO, NTE*, RXR+, COMPONENT*[RXC, NTE*]],
        RXE, NTE*,
        TIMING_ENCODED*[TQ1, TQ2*],
        RXR+, RXC*,
        OBSERVATION*[OBX, NTE*],
        FT1*, BLG?, CTI*
    ]
]);

structure!(RDS_O13 = [
    MSH, SFT*, UAC?, NTE*,
    PATIENT?[
        PID, PD1?, NTE*, AL1*,
        PATIENT_VISIT?[PV1, PV2?]
    ],
    ORDER+[
        ORC,
        TIMING*[TQ1, TQ2*],
        ORDER_DETAIL?[RXO, NTE*, RXR+, COMPONENT*[RXC, NTE*]],
        ENCODING?[RXE, NTE*, TIMING_ENCODED*[TQ1, TQ2*], RXR*, RXC*],
        RXD, NTE*, RXR+, RXC*,
        OBSERVATION*[OBX, NTE*],
        FT1*
    ]
]);

structure!(OMG_O19 = [
    MSH, SFT*, UAC?, NTE*,
    PATIENT?[
        PID, PD1?, PRT*, NTE*, NK1*,
        PATIENT_VISIT?[PV1, PV2?, PRT*],
        INSURANCE*[IN1, IN2?, IN3?],
        GT1?, AL1*
    ],
    ORDER+[
        ORC, PRT*,
        TIMING*[TQ1, TQ2*],
        OBSERVATION_REQUEST?[
            OBR, NTE*, PRT*, CTD?, DG1*,
            OBSERVATION*[OBX, NTE*],
            SPECIMEN*[SPM, OBX*, CONTAINER*[SAC, OBX*]]
        ],
        FT1*, CTI*, BLG?
    ]
]);

structure!(OUL_R22 = [
    MSH, SFT*, UAC?, NTE*,
    PATIENT?[PID, PD1?, PRT*, NTE*],
    VISIT?[PV1, PV2?, PRT*],
    SPECIMEN+[
        SPM, OBX*,
        CONTAINER*[SAC, INV?],
        ORDER*[
            OBR, ORC?, NTE*, PRT*,
            TIMING_QTY*[TQ1, TQ2*],
            RESULT*[OBX, TCD?, SID*, NTE*],
            CTI*
        ]
    ],
    DSC?
]);

structure!(REF_I12 = [
    MSH, SFT*, UAC?, RF1?,
    AUTHORIZATION_CONTACT?[AUT, CTD?],
    PROVIDER_CONTACT+[PRD, CTD*],
    PID, NK1*, GT1*,
    INSURANCE*[IN1, IN2?, IN3?],
    ACC?, DG1*, DRG*, AL1*,
    PROCEDURE*[PR1, AUTHORIZATION_CONTACT?[AUT, CTD?]],
    OBSERVATION*[OBR, NTE*, RESULTS_NOTES*[OBX, NTE*]],
    PATIENT_VISIT?[PV1, PV2?],
    NTE*
]);

structure!(PPR_PC1 = [
    MSH, SFT*, UAC?, PID,
    PATIENT_VISIT?[PV1, PV2?],
    PROBLEM+[
        PRB, NTE*, VAR*,
        PROBLEM_ROLE*[ROL, VAR*],
        PATHWAY*[PTH, VAR*],
        GOAL*[GOL, NTE*, VAR*, GOAL_ROLE*[ROL, VAR*], GOAL_OBSERVATION*[OBX, NTE*]],
        ORDER*[ORC, ORDER_DETAIL?[(OBR|RXO), NTE*, VAR*, ORDER_OBSERVATION*[OBX, NTE*, VAR*]]],
        PROBLEM_OBSERVATION*[OBX, NTE*]
    ]
]);

/// Message types (MSH-9.1) with at least one supported structure.
const KNOWN_TYPES: [&str; 15] =
    ["ADT", "ORU", "ORM", "OML", "SIU", "MDM", "VXU", "BAR", "DFT", "RDE", "RDS", "OMG", "OUL", "REF", "PPR"];

/// The message structures the gateway can group (a subset of HL7 table 0354).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Structure {
    AdtA01,
    AdtA02,
    AdtA03,
    AdtA05,
    AdtA06,
    AdtA09,
    AdtA15,
    AdtA16,
    AdtA21,
    AdtA24,
    AdtA30,
    AdtA45,
    AdtA60,
    AdtA39,
    OruR01,
    OrmO01,
    OmlO21,
    SiuS12,
    MdmT02,
    VxuV04,
    AdtA17,
    AdtA37,
    MdmT01,
    BarP01,
    BarP06,
    DftP03,
    DftP11,
    RdeO11,
    RdsO13,
    OmgO19,
    OulR22,
    RefI12,
    PprPc1,
}

impl Structure {
    pub(crate) const ALL: [Structure; 33] = [
        Structure::AdtA01,
        Structure::AdtA02,
        Structure::AdtA03,
        Structure::AdtA05,
        Structure::AdtA06,
        Structure::AdtA09,
        Structure::AdtA15,
        Structure::AdtA16,
        Structure::AdtA21,
        Structure::AdtA24,
        Structure::AdtA30,
        Structure::AdtA45,
        Structure::AdtA60,
        Structure::AdtA39,
        Structure::OruR01,
        Structure::OrmO01,
        Structure::OmlO21,
        Structure::SiuS12,
        Structure::MdmT02,
        Structure::VxuV04,
        Structure::AdtA17,
        Structure::AdtA37,
        Structure::MdmT01,
        Structure::BarP01,
        Structure::BarP06,
        Structure::DftP03,
        Structure::DftP11,
        Structure::RdeO11,
        Structure::RdsO13,
        Structure::OmgO19,
        Structure::OulR22,
        Structure::RefI12,
        Structure::PprPc1,
    ];

    /// The grammar of this structure.
    pub(crate) fn grammar(self) -> &'static GroupDef {
        match self {
            Structure::AdtA01 => &ADT_A01,
            Structure::AdtA02 => &ADT_A02,
            Structure::AdtA03 => &ADT_A03,
            Structure::AdtA05 => &ADT_A05,
            Structure::AdtA06 => &ADT_A06,
            Structure::AdtA09 => &ADT_A09,
            Structure::AdtA15 => &ADT_A15,
            Structure::AdtA16 => &ADT_A16,
            Structure::AdtA21 => &ADT_A21,
            Structure::AdtA24 => &ADT_A24,
            Structure::AdtA30 => &ADT_A30,
            Structure::AdtA45 => &ADT_A45,
            Structure::AdtA60 => &ADT_A60,
            Structure::AdtA39 => &ADT_A39,
            Structure::OruR01 => &ORU_R01,
            Structure::OrmO01 => &ORM_O01,
            Structure::OmlO21 => &OML_O21,
            Structure::SiuS12 => &SIU_S12,
            Structure::MdmT02 => &MDM_T02,
            Structure::VxuV04 => &VXU_V04,
            Structure::AdtA17 => &ADT_A17,
            Structure::AdtA37 => &ADT_A37,
            Structure::MdmT01 => &MDM_T01,
            Structure::BarP01 => &BAR_P01,
            Structure::BarP06 => &BAR_P06,
            Structure::DftP03 => &DFT_P03,
            Structure::DftP11 => &DFT_P11,
            Structure::RdeO11 => &RDE_O11,
            Structure::RdsO13 => &RDS_O13,
            Structure::OmgO19 => &OMG_O19,
            Structure::OulR22 => &OUL_R22,
            Structure::RefI12 => &REF_I12,
            Structure::PprPc1 => &PPR_PC1,
        }
    }

    /// The table 0354 code, e.g. `ADT_A01`.
    pub(crate) fn id(self) -> &'static str {
        self.grammar().name
    }

    /// From a table 0354 code (MSH-9.3).
    pub(crate) fn from_id(id: &str) -> Option<Structure> {
        Structure::ALL.into_iter().find(|s| s.id() == id)
    }

    /// MSH-9.3 when it names a supported structure, otherwise from MSH-9.1 and MSH-9.2 by
    /// table 0354; whitespace around each part does not count.
    pub fn of(code: &str, trigger: &str, structure: &str) -> Option<Structure> {
        Structure::from_id(structure.trim()).or_else(|| Structure::for_event(code.trim(), trigger.trim()))
    }

    /// Why a message of this type cannot be grouped (hence not converted): UnsupportedEventCode
    /// (MSH-9.2) for a message type the gateway knows, UnsupportedMessageType (MSH-9.1) otherwise.
    pub fn unsupported(code: &str) -> Hl7Error {
        if KNOWN_TYPES.contains(&code.trim()) {
            Hl7Error::at(ErrorCode::UnsupportedEventCode, Location::component("MSH", 9, 2))
        } else {
            Hl7Error::at(ErrorCode::UnsupportedMessageType, Location::component("MSH", 9, 1))
        }
    }

    /// From message type and trigger event (MSH-9.1, MSH-9.2), by HL7 table 0354.
    pub(crate) fn for_event(code: &str, trigger: &str) -> Option<Structure> {
        Some(match (code, trigger) {
            ("ADT", "A01" | "A04" | "A08" | "A13") => Structure::AdtA01,
            ("ADT", "A02") => Structure::AdtA02,
            ("ADT", "A03") => Structure::AdtA03,
            ("ADT", "A05" | "A14" | "A28" | "A31") => Structure::AdtA05,
            ("ADT", "A06" | "A07") => Structure::AdtA06,
            ("ADT", "A09" | "A10" | "A11") => Structure::AdtA09,
            ("ADT", "A15") => Structure::AdtA15,
            ("ADT", "A16") => Structure::AdtA16,
            ("ADT", "A21" | "A22" | "A23" | "A25" | "A26" | "A27" | "A29" | "A32" | "A33") => Structure::AdtA21,
            ("ADT", "A17") => Structure::AdtA17,
            ("ADT", "A37") => Structure::AdtA37,
            ("ADT", "A24") => Structure::AdtA24,
            ("ADT", "A47") => Structure::AdtA30,
            ("ADT", "A45") => Structure::AdtA45,
            ("ADT", "A60") => Structure::AdtA60,
            ("ADT", "A39" | "A40" | "A41" | "A42") => Structure::AdtA39,
            ("ORU", "R01") => Structure::OruR01,
            ("ORM", "O01") => Structure::OrmO01,
            ("OML", "O21") => Structure::OmlO21,
            (
                "SIU",
                "S12" | "S13" | "S14" | "S15" | "S16" | "S17" | "S18" | "S19" | "S20" | "S21" | "S22" | "S23" | "S24"
                | "S26",
            ) => Structure::SiuS12,
            ("MDM", "T02" | "T04" | "T06" | "T08" | "T10") => Structure::MdmT02,
            ("MDM", "T01" | "T03" | "T05" | "T07" | "T09" | "T11") => Structure::MdmT01,
            ("BAR", "P01" | "P05") => Structure::BarP01,
            ("BAR", "P06") => Structure::BarP06,
            ("DFT", "P03") => Structure::DftP03,
            ("DFT", "P11") => Structure::DftP11,
            ("RDE", "O11") => Structure::RdeO11,
            ("RDS", "O13") => Structure::RdsO13,
            ("OMG", "O19") => Structure::OmgO19,
            ("OUL", "R22") => Structure::OulR22,
            ("REF", "I12") => Structure::RefI12,
            ("PPR", "PC1") => Structure::PprPc1,
            ("VXU", "V04") => Structure::VxuV04,
            _ => return None,
        })
    }
}

impl<'a> Message<'a> {
    /// The message structure: MSH-9.3 when it names a supported structure, otherwise derived
    /// from MSH-9.1 and MSH-9.2 by table 0354 (so a missing or misspelt MSH-9.3 still works).
    /// `None` when the structure is not one of [`Structure::ALL`].
    pub(crate) fn structure(&self) -> Option<Structure> {
        let msh9 = self.msh().field(9);
        let part = |n| msh9.component(n).value();
        Structure::of(&part(1), &part(2), &part(3))
    }
}

/// A node of the grouped tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// A segment, by its position in the message (see [`Message::segment_at`]).
    Segment(usize),
    Group(Group),
}

/// One instance of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub(crate) name: &'static str,
    pub(crate) children: Vec<Node>,
}

impl Group {
    fn new(name: &'static str) -> Group {
        Group { name, children: Vec::new() }
    }

    /// The child groups named `name`, in order.
    pub(crate) fn groups<'s, 'n>(&'s self, name: &'n str) -> impl Iterator<Item = &'s Group> + use<'s, 'n> {
        self.children.iter().filter_map(move |n| match n {
            Node::Group(g) if g.name == name => Some(g),
            _ => None,
        })
    }

    /// The first child group named `name`.
    pub(crate) fn group(&self, name: &str) -> Option<&Group> {
        self.groups(name).next()
    }

    /// The positions of the segments directly in this group.
    pub(crate) fn segment_indexes(&self) -> impl Iterator<Item = usize> + '_ {
        self.children.iter().filter_map(|n| match n {
            Node::Segment(i) => Some(*i),
            Node::Group(_) => None,
        })
    }

    /// The segments directly in this group with ID `id`.
    pub(crate) fn segments<'s, 'm, 'a, 'i>(
        &'s self,
        msg: &'m Message<'a>,
        id: &'i str,
    ) -> impl Iterator<Item = Segment<'m, 'a>> + use<'s, 'm, 'a, 'i> {
        self.segment_indexes().filter_map(move |i| msg.segment_at(i)).filter(move |s| s.id() == id)
    }

    /// The first segment directly in this group with ID `id`.
    pub(crate) fn segment<'m, 'a>(&self, msg: &'m Message<'a>, id: &str) -> Option<Segment<'m, 'a>> {
        self.segments(msg, id).next()
    }

    #[cfg(test)]
    /// The positions of all segments in this group and its subgroups, in message order.
    pub fn all_segment_indexes(&self) -> Vec<usize> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    #[cfg(test)]
    fn collect(&self, out: &mut Vec<usize>) {
        for node in &self.children {
            match node {
                Node::Segment(i) => out.push(*i),
                Node::Group(g) => g.collect(out),
            }
        }
    }

    #[cfg(test)]
    /// A compact rendering such as `MSH PATIENT_RESULT{PATIENT{PID} …}` (segment IDs only, no
    /// content), for logs and tests.
    pub fn outline(&self, msg: &Message) -> String {
        let mut out = String::new();
        self.outline_into(msg, &mut out);
        out
    }

    #[cfg(test)]
    fn outline_into(&self, msg: &Message, out: &mut String) {
        for (k, node) in self.children.iter().enumerate() {
            if k > 0 {
                out.push(' ');
            }
            match node {
                Node::Segment(i) => out.push_str(msg.segment_at(*i).map_or("?", |s| s.id())),
                Node::Group(g) => {
                    let _ = write!(out, "{}{{", g.name);
                    g.outline_into(msg, out);
                    out.push('}');
                }
            }
        }
    }
}

/// A segment the grammar did not place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unconsumed {
    /// Position in the message.
    pub(crate) index: usize,
    pub(crate) id: String,
}

/// A required segment or group that did not occur.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Missing {
    /// The group (or structure) it was required in.
    pub(crate) group: &'static str,
    /// The segment ID or group name.
    pub(crate) item: &'static str,
}

/// A message's segments arranged by its structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouped {
    pub(crate) structure: Structure,
    /// The whole message; its name is the structure ID.
    pub(crate) root: Group,
    /// Non-Z segments that fit nowhere in the grammar (not in the tree).
    pub(crate) unconsumed: Vec<Unconsumed>,
    /// Z-segments (in the tree, where they occurred, and listed here).
    pub(crate) zsegments: Vec<Unconsumed>,
    pub(crate) missing: Vec<Missing>,
}

/// Groups `msg` by its structure.
///
/// Errors only when the structure is not supported: UnsupportedEventCode (MSH-9.2) for a
/// known message type, UnsupportedMessageType (MSH-9.1) otherwise.
pub fn group(msg: &Message) -> Result<Grouped, Hl7Error> {
    match msg.structure() {
        Some(structure) => Ok(group_as(msg, structure)),
        None => Err(Structure::unsupported(&msg.msh().field(9).component(1).value())),
    }
}

/// Groups `msg` as `structure`, whatever its MSH-9 says.
pub(crate) fn group_as(msg: &Message, structure: Structure) -> Grouped {
    let mut matcher = Matcher::new(structure.grammar());
    for segment in msg.segments() {
        matcher.feed(segment.index(), segment.id());
    }
    matcher.finish(structure)
}

/// An open group instance and where in its grammar the matcher is.
struct Frame {
    def: &'static GroupDef,
    /// The current item.
    pos: usize,
    /// Whether the current item has matched at least once.
    used: bool,
    node: Group,
}

impl Frame {
    fn new(def: &'static GroupDef) -> Frame {
        Frame { def, pos: 0, used: false, node: Group::new(def.name) }
    }

    /// The first item at or after the current position that `id` can begin.
    fn find(&self, id: &str) -> Option<usize> {
        let current = &self.def.items.get(self.pos)?;
        let from = if self.used && !current.card().repeats() { self.pos + 1 } else { self.pos };
        (from..self.def.items.len()).find(|&j| self.def.items[j].starts_with(id))
    }

    /// Required items passed over on the way from the current position to `to` (exclusive).
    fn skipped(&self, to: usize) -> impl Iterator<Item = Missing> + '_ {
        let from = self.pos + usize::from(self.used);
        self.def.items[from.min(to)..to]
            .iter()
            .filter(|item| item.card().required())
            .map(|item| Missing { group: self.def.name, item: item.name() })
    }
}

struct Matcher {
    /// Never empty: the root frame stays until `finish`.
    stack: Vec<Frame>,
    unconsumed: Vec<Unconsumed>,
    zsegments: Vec<Unconsumed>,
    missing: Vec<Missing>,
}

impl Matcher {
    fn new(root: &'static GroupDef) -> Matcher {
        Matcher { stack: vec![Frame::new(root)], unconsumed: Vec::new(), zsegments: Vec::new(), missing: Vec::new() }
    }

    fn feed(&mut self, index: usize, id: &str) {
        if id.starts_with('Z') {
            if let Some(top) = self.stack.last_mut() {
                top.node.children.push(Node::Segment(index));
            }
            self.zsegments.push(Unconsumed { index, id: id.to_owned() });
            return;
        }
        let found = (0..self.stack.len()).rev().find_map(|depth| Some((depth, self.stack[depth].find(id)?)));
        let Some((depth, item)) = found else {
            self.unconsumed.push(Unconsumed { index, id: id.to_owned() });
            return;
        };
        while self.stack.len() > depth + 1 {
            self.close_top();
        }
        self.enter(item, index, id);
    }

    /// Moves the top frame to `item` and places segment `index` there, opening groups down to
    /// the segment.
    fn enter(&mut self, mut item: usize, index: usize, id: &str) {
        while let Some(top) = self.stack.last_mut() {
            self.missing.extend(top.skipped(item));
            (top.pos, top.used) = (item, true);
            match &top.def.items[item] {
                Item::Group(def, _) => {
                    let frame = Frame::new(def);
                    // `id` begins the group, so it is found (the guard only avoids a panic).
                    let Some(next) = frame.find(id) else { return };
                    self.stack.push(frame);
                    item = next;
                }
                Item::Segment(..) | Item::Choice(..) => {
                    top.node.children.push(Node::Segment(index));
                    return;
                }
            }
        }
    }

    /// Closes the innermost group instance into its parent.
    fn close_top(&mut self) {
        let Some(frame) = self.stack.pop() else { return };
        self.missing.extend(frame.skipped(frame.def.items.len()));
        if let Some(parent) = self.stack.last_mut() {
            parent.node.children.push(Node::Group(frame.node));
        }
    }

    fn finish(mut self, structure: Structure) -> Grouped {
        while self.stack.len() > 1 {
            self.close_top();
        }
        let root = match self.stack.pop() {
            Some(frame) => {
                self.missing.extend(frame.skipped(frame.def.items.len()));
                frame.node
            }
            None => Group::new(structure.id()),
        };
        Grouped { structure, root, unconsumed: self.unconsumed, zsegments: self.zsegments, missing: self.missing }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parser::parse;
    use super::*;

    /// A message of `msh9` with segments `ids` (each with a field so it is realistic).
    fn message(msh9: &str, ids: &str) -> Vec<u8> {
        let mut raw = format!("MSH|^~\\&|A|B|C|D|20260101||{msh9}|1|P|2.5.1\r");
        for (n, id) in ids.split_whitespace().enumerate() {
            raw.push_str(&format!("{id}|{}\r", n + 1));
        }
        raw.into_bytes()
    }

    fn grouped(msh9: &str, ids: &str) -> (String, Grouped) {
        let raw = message(msh9, ids);
        let msg = parse(&raw).unwrap();
        let g = group(&msg).unwrap();
        (g.root.outline(&msg), g)
    }

    fn outline(msh9: &str, ids: &str) -> String {
        let (o, g) = grouped(msh9, ids);
        assert!(g.unconsumed.is_empty(), "{o}: unconsumed {:?}", g.unconsumed);
        o
    }

    #[test]
    fn structure_from_msh9() {
        let s = |msh9: &str| parse(&message(msh9, "")).unwrap().structure();
        assert_eq!(s("ADT^A04^ADT_A01"), Some(Structure::AdtA01));
        for (ev, want) in [
            ("A01", Structure::AdtA01),
            ("A04", Structure::AdtA01),
            ("A08", Structure::AdtA01),
            ("A13", Structure::AdtA01),
            ("A02", Structure::AdtA02),
            ("A03", Structure::AdtA03),
            ("A05", Structure::AdtA05),
            ("A14", Structure::AdtA05),
            ("A28", Structure::AdtA05),
            ("A31", Structure::AdtA05),
            ("A06", Structure::AdtA06),
            ("A07", Structure::AdtA06),
            ("A09", Structure::AdtA09),
            ("A10", Structure::AdtA09),
            ("A11", Structure::AdtA09),
            ("A39", Structure::AdtA39),
            ("A40", Structure::AdtA39),
            ("A41", Structure::AdtA39),
            ("A42", Structure::AdtA39),
            ("A15", Structure::AdtA15),
            ("A16", Structure::AdtA16),
            ("A25", Structure::AdtA21),
            ("A26", Structure::AdtA21),
            ("A27", Structure::AdtA21),
            ("A24", Structure::AdtA24),
            ("A47", Structure::AdtA30),
            ("A45", Structure::AdtA45),
            ("A60", Structure::AdtA60),
        ] {
            assert_eq!(s(&format!("ADT^{ev}")), Some(want), "{ev}");
        }
        assert_eq!(s("ORU^R01"), Some(Structure::OruR01));
        assert_eq!(s("ORM^O01"), Some(Structure::OrmO01));
        assert_eq!(s("OML^O21"), Some(Structure::OmlO21));
        assert_eq!(s("VXU^V04"), Some(Structure::VxuV04));
        for ev in ["S12", "S13", "S14", "S15", "S24", "S26"] {
            assert_eq!(s(&format!("SIU^{ev}")), Some(Structure::SiuS12), "{ev}");
        }
        assert_eq!(s("SIU^S25"), None);
        for ev in ["T02", "T04", "T06", "T08", "T10"] {
            assert_eq!(s(&format!("MDM^{ev}")), Some(Structure::MdmT02), "{ev}");
        }
        for ev in ["T01", "T03", "T05", "T07", "T09", "T11"] {
            assert_eq!(s(&format!("MDM^{ev}")), Some(Structure::MdmT01), "{ev}");
        }
        assert_eq!(s("ADT^A17"), Some(Structure::AdtA17));
        assert_eq!(s("ADT^A37"), Some(Structure::AdtA37));
        assert_eq!(s("ADT^A23"), Some(Structure::AdtA21));
        assert_eq!(s("ADT^A29"), Some(Structure::AdtA21));
        assert_eq!(s("BAR^P05"), Some(Structure::BarP01));
        assert_eq!(s("PPR^PC1"), Some(Structure::PprPc1));
        assert_eq!(s("ADT^A18"), None);
        assert_eq!(s("ADT^A12"), None);
        // A misspelt MSH-9.3 falls back to the event; a valid one wins over it.
        assert_eq!(s("ADT^A08^ADT_A08"), Some(Structure::AdtA01));
        assert_eq!(s("ADT^A08^ADT_A05"), Some(Structure::AdtA05));
        assert_eq!(s("ZZZ^Z01^ORU_R01"), Some(Structure::OruR01));
        for st in Structure::ALL {
            assert_eq!(Structure::from_id(st.id()), Some(st));
        }
    }

    #[test]
    fn ingest_and_converter_decide_alike_ignoring_padding() {
        assert_eq!(Structure::of(" ADT ", "A08 ", ""), Some(Structure::AdtA01));
        assert_eq!(Structure::of("ADT", "A15", " ADT_A01 "), Some(Structure::AdtA01));
        for (code, trigger) in [("ADT", "A18"), ("ADT", "A30"), ("ADT", "A12"), ("MDM", "T12"), ("RDE", "O25")] {
            assert_eq!(Structure::of(code, trigger, ""), None, "{code}^{trigger}");
            assert_eq!(Structure::unsupported(code).code, ErrorCode::UnsupportedEventCode);
        }
        assert_eq!(Structure::unsupported("QRY").code, ErrorCode::UnsupportedMessageType);
        let m = crate::hl7::parse(b"MSH|^~\\&|A|B|C|D||| ADT ^ A08 |1|P|2.5\r").unwrap();
        assert_eq!(m.structure(), Some(Structure::AdtA01));
    }

    #[test]
    fn unsupported_structures_are_errors() {
        let error = |msh9: &str| {
            let raw = message(msh9, "");
            let e = group(&parse(&raw).unwrap()).unwrap_err();
            (e.code, e.location.to_string())
        };
        assert_eq!(error("ADT^A18"), (ErrorCode::UnsupportedEventCode, "MSH-9.2".into()));
        assert_eq!(error("ACK^A01"), (ErrorCode::UnsupportedMessageType, "MSH-9.1".into()));
    }

    #[test]
    fn oru_multi_order_with_specimen_observations() {
        let o =
            outline("ORU^R01^ORU_R01", "PID PD1 NTE PV1 ORC OBR NTE TQ1 OBX NTE OBX SPM OBX OBX OBR OBX SPM OBX SPM");
        assert_eq!(
            o,
            "MSH PATIENT_RESULT{PATIENT{PID PD1 NTE VISIT{PV1}} \
             ORDER_OBSERVATION{ORC OBR NTE TIMING_QTY{TQ1} OBSERVATION{OBX NTE} OBSERVATION{OBX} SPECIMEN{SPM OBX OBX}} \
             ORDER_OBSERVATION{OBR OBSERVATION{OBX} SPECIMEN{SPM OBX} SPECIMEN{SPM}}}"
        );
    }

    #[test]
    fn oru_several_patients_and_dsc() {
        let o = outline("ORU^R01", "PID OBR OBX PID OBR OBX DSC");
        assert_eq!(
            o,
            "MSH PATIENT_RESULT{PATIENT{PID} ORDER_OBSERVATION{OBR OBSERVATION{OBX}}} \
             PATIENT_RESULT{PATIENT{PID} ORDER_OBSERVATION{OBR OBSERVATION{OBX}}} DSC"
        );
    }

    #[test]
    fn adt_a39_several_patients() {
        let o = outline("ADT^A40^ADT_A39", "EVN PID MRG PID PD1 MRG PV1 PID MRG");
        assert_eq!(o, "MSH EVN PATIENT{PID MRG} PATIENT{PID PD1 MRG PV1} PATIENT{PID MRG}");
    }

    #[test]
    fn adt_a01_groups() {
        let (o, g) = grouped(
            "ADT^A01^ADT_A01",
            "EVN PID PD1 ROL NK1 NK1 PV1 PV2 ROL OBX OBX AL1 DG1 DG1 PR1 ROL PR1 GT1 IN1 IN2 IN1 IN3 ACC",
        );
        assert_eq!(
            o,
            "MSH EVN PID PD1 ROL NEXT_OF_KIN{NK1} NEXT_OF_KIN{NK1} PV1 PV2 ROL OBSERVATION{OBX} OBSERVATION{OBX} \
             AL1 DG1 DG1 PROCEDURE{PR1 ROL} PROCEDURE{PR1} GT1 INSURANCE{IN1 IN2} INSURANCE{IN1 IN3} ACC"
        );
        assert!(g.unconsumed.is_empty() && g.missing.is_empty() && g.zsegments.is_empty());
    }

    #[test]
    fn unknown_and_out_of_order_segments_are_reported() {
        let (o, g) = grouped("ADT^A08", "EVN PID PV1 NK1 XYZ OBX PID AL1");
        assert_eq!(o, "MSH EVN PID PV1 OBSERVATION{OBX} AL1");
        let un: Vec<_> = g.unconsumed.iter().map(|u| (u.index, u.id.as_str())).collect();
        assert_eq!(un, [(4, "NK1"), (5, "XYZ"), (7, "PID")]);
    }

    #[test]
    fn z_segments_stay_where_they_occur() {
        let raw = message("ORU^R01", "PID ZPI OBR OBX ZOB");
        let msg = parse(&raw).unwrap();
        let g = group(&msg).unwrap();
        assert_eq!(
            g.root.outline(&msg),
            "MSH PATIENT_RESULT{PATIENT{PID ZPI} ORDER_OBSERVATION{OBR OBSERVATION{OBX ZOB}}}"
        );
        let z: Vec<_> = g.zsegments.iter().map(|u| (u.index, u.id.as_str())).collect();
        assert_eq!(z, [(2, "ZPI"), (5, "ZOB")]);
        assert!(g.unconsumed.is_empty());
    }

    #[test]
    fn missing_required_items_are_listed() {
        // An OBX after the visit can only begin a patient observation, which comes before it.
        let (o, g) = grouped("ORU^R01", "PID PV1 OBX");
        assert_eq!(o, "MSH PATIENT_RESULT{PATIENT{PID VISIT{PV1}}}");
        assert_eq!(g.unconsumed, [Unconsumed { index: 3, id: "OBX".into() }]);
        assert_eq!(g.missing, [Missing { group: "PATIENT_RESULT", item: "ORDER_OBSERVATION" }]);
        let (_, g) = grouped("ORU^R01", "PID PV1 OBR");
        assert_eq!(g.missing, []);
        let (_, g) = grouped("ADT^A01", "PID PV1");
        assert_eq!(g.missing, [Missing { group: "ADT_A01", item: "EVN" }]);
        let (o, g) = grouped("ORU^R01", "");
        assert_eq!(o, "MSH");
        assert_eq!(g.missing, [Missing { group: "ORU_R01", item: "PATIENT_RESULT" }]);
    }

    #[test]
    fn group_navigation() {
        let raw = message("ORU^R01", "PID OBR OBX NTE OBX OBR OBX");
        let msg = parse(&raw).unwrap();
        let g = group(&msg).unwrap();
        let result = g.root.group("PATIENT_RESULT").unwrap();
        let pid = result.group("PATIENT").unwrap().segment(&msg, "PID").unwrap();
        assert_eq!(pid.field(1).value(), "1");
        let orders: Vec<_> = result.groups("ORDER_OBSERVATION").collect();
        assert_eq!(orders.len(), 2);
        assert_eq!(orders[0].groups("OBSERVATION").count(), 2);
        let obx = orders[0].groups("OBSERVATION").nth(1).unwrap().segment(&msg, "OBX").unwrap();
        assert_eq!(obx.index(), 5);
        assert_eq!(orders[0].all_segment_indexes(), [2, 3, 4, 5]);
        assert_eq!(g.root.segment_indexes().collect::<Vec<_>>(), [0]);
        assert_eq!(g.root.segments(&msg, "MSH").count(), 1);
    }

    #[test]
    fn other_structures() {
        assert_eq!(
            outline("ORM^O01", "NTE PID PV1 IN1 ORC OBR NTE DG1 OBX NTE ORC RXO BLG"),
            "MSH NTE PATIENT{PID PATIENT_VISIT{PV1} INSURANCE{IN1}} \
             ORDER{ORC ORDER_DETAIL{OBR NTE DG1 OBSERVATION{OBX NTE}}} ORDER{ORC ORDER_DETAIL{RXO} BLG}"
        );
        assert_eq!(
            outline("OML^O21^OML_O21", "PID PV1 ORC TQ1 OBR NTE OBX SPM OBX SAC ORC OBR SPM"),
            "MSH PATIENT{PID PATIENT_VISIT{PV1}} \
             ORDER{ORC TIMING{TQ1} OBSERVATION_REQUEST{OBR NTE OBSERVATION{OBX} SPECIMEN{SPM OBX CONTAINER{SAC}}}} \
             ORDER{ORC OBSERVATION_REQUEST{OBR SPECIMEN{SPM}}}"
        );
        assert_eq!(
            outline("SIU^S14", "SCH NTE PID PV1 RGS AIS NTE AIL AIP RGS AIG"),
            "MSH SCH NTE PATIENT{PID PV1} \
             RESOURCES{RGS SERVICE{AIS NTE} LOCATION_RESOURCE{AIL} PERSONNEL_RESOURCE{AIP}} \
             RESOURCES{RGS GENERAL_RESOURCE{AIG}}"
        );
        assert_eq!(
            outline("MDM^T02", "EVN PID PV1 ORC OBR TXA OBX NTE OBX"),
            "MSH EVN PID PV1 COMMON_ORDER{ORC OBR} TXA OBSERVATION{OBX NTE} OBSERVATION{OBX}"
        );
        assert_eq!(
            outline("VXU^V04^VXU_V04", "PID NK1 PV1 IN1 OBX ORC RXA RXR OBX NTE OBX RXA"),
            "MSH PID NK1 PATIENT_VISIT{PV1} INSURANCE{IN1} PERSON_OBSERVATION{OBX} \
             ORDER{ORC RXA RXR OBSERVATION{OBX NTE} OBSERVATION{OBX}} ORDER{RXA}"
        );
        assert_eq!(
            outline("ADT^A03", "EVN PID PV1 OBX DG1 PR1 OBX GT1"),
            "MSH EVN PID PV1 OBSERVATION{OBX} DG1 PROCEDURE{PR1} OBSERVATION{OBX} GT1"
        );
        assert_eq!(outline("ADT^A02", "EVN PID PV1 OBX PDA"), "MSH EVN PID PV1 OBSERVATION{OBX} PDA");
        assert_eq!(outline("ADT^A28", "EVN PID NK1 PV1 IN1"), "MSH EVN PID NEXT_OF_KIN{NK1} PV1 INSURANCE{IN1}");
        assert_eq!(outline("ADT^A07", "EVN PID MRG NK1 PV1"), "MSH EVN PID MRG NEXT_OF_KIN{NK1} PV1");
        assert_eq!(outline("ADT^A11", "EVN PID PV1 OBX DG1"), "MSH EVN PID PV1 OBSERVATION{OBX} DG1");
    }

    #[test]
    fn billing_pharmacy_referral_and_problem_structures() {
        assert_eq!(
            outline("ADT^A17", "EVN PID PV1 OBX PID PD1 PV1"),
            "MSH EVN PATIENT{PID PV1 OBSERVATION{OBX}} PATIENT{PID PD1 PV1}"
        );
        assert_eq!(outline("ADT^A37", "EVN PID PV1 PID"), "MSH EVN PATIENT{PID PV1} PATIENT{PID}");
        assert_eq!(outline("MDM^T01", "EVN PID PV1 TXA CON"), "MSH EVN PID PV1 TXA CON");
        assert_eq!(
            outline("BAR^P01", "EVN PID PV1 DG1 PR1 GT1 IN1 PV1"),
            "MSH EVN PID VISIT{PV1 DG1 PROCEDURE{PR1} GT1 INSURANCE{IN1}} VISIT{PV1}"
        );
        assert_eq!(
            outline("DFT^P03", "EVN PID PV1 FT1 PR1 FT1 ORC OBR DG1 GT1 IN1"),
            "MSH EVN PID PV1 FINANCIAL{FT1 FINANCIAL_PROCEDURE{PR1}} \
             FINANCIAL{FT1 FINANCIAL_COMMON_ORDER{ORC FINANCIAL_ORDER{OBR}}} DG1 GT1 INSURANCE{IN1}"
        );
        assert_eq!(
            outline("DFT^P11", "EVN PID PV1 DG1 IN1 FT1 DG1 FT1"),
            "MSH EVN PID PV1 DG1 INSURANCE{IN1} FINANCIAL{FT1 DG1} FINANCIAL{FT1}"
        );
        assert_eq!(
            outline("RDE^O11", "PID PV1 AL1 ORC RXE TQ1 RXR ORC RXE RXR"),
            "MSH PATIENT{PID PATIENT_VISIT{PV1} AL1} ORDER{ORC RXE TIMING_ENCODED{TQ1} RXR} ORDER{ORC RXE RXR}"
        );
        assert_eq!(
            outline("RDS^O13", "PID ORC RXE TQ1 RXR RXD RXR"),
            "MSH PATIENT{PID} ORDER{ORC ENCODING{RXE TIMING_ENCODED{TQ1} RXR} RXD RXR}"
        );
        assert_eq!(
            outline("OMG^O19", "PID PV1 ORC OBR NTE OBX"),
            "MSH PATIENT{PID PATIENT_VISIT{PV1}} ORDER{ORC OBSERVATION_REQUEST{OBR NTE OBSERVATION{OBX}}}"
        );
        assert_eq!(
            outline("OUL^R22", "PID PV1 SPM OBX SAC OBR ORC OBX OBX SPM OBR OBX"),
            "MSH PATIENT{PID} VISIT{PV1} SPECIMEN{SPM OBX CONTAINER{SAC} ORDER{OBR ORC RESULT{OBX} RESULT{OBX}}} \
             SPECIMEN{SPM ORDER{OBR RESULT{OBX}}}"
        );
        assert_eq!(
            outline("REF^I12", "RF1 PRD PRD PID DG1 PV1 NTE"),
            "MSH RF1 PROVIDER_CONTACT{PRD} PROVIDER_CONTACT{PRD} PID DG1 PATIENT_VISIT{PV1} NTE"
        );
        assert_eq!(
            outline("PPR^PC1", "PID PV1 PRB NTE ROL OBX PRB"),
            "MSH PID PATIENT_VISIT{PV1} PROBLEM{PRB NTE PROBLEM_ROLE{ROL} PROBLEM_OBSERVATION{OBX}} PROBLEM{PRB}"
        );
    }

    #[test]
    fn every_grammar_is_well_formed() {
        fn check(def: &GroupDef, depth: usize) {
            assert!(depth < 6, "{} nests too deep", def.name);
            assert!(!def.items.is_empty(), "{} is empty", def.name);
            for item in def.items {
                match item {
                    Item::Group(g, _) => {
                        // A group must begin with something, or the matcher could not enter it.
                        assert!(g.items.iter().any(|i| i.card().required()), "{} has no anchor", g.name);
                        check(g, depth + 1);
                    }
                    Item::Segment(id, _) => assert!(id.len() == 3, "{id}"),
                    Item::Choice(ids, _) => assert!(!ids.is_empty()),
                }
            }
        }
        for s in Structure::ALL {
            let def = s.grammar();
            assert!(matches!(def.items[0], Item::Segment("MSH", Card::One)));
            check(def, 0);
        }
    }
}
