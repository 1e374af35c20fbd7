#!/usr/bin/env python3
"""Generate a synthetic HL7 v2 test corpus for the HL7 v2 -> FHIR gateway.

All data is FAKE.  Stdlib only.  Run:  python3 tests/corpus/make_corpus.py

Writes
  tests/corpus/hl7/<vendor>_<type>_<trigger>_<nn>.hl7   one message per file
  tests/corpus/batch/*.hl7                              FHS/BHS batches
  tests/corpus/invalid/*.hl7                            messages that must be rejected
  tests/corpus/expected.json                            structure / MSH-10 / resource counts
  tests/corpus/MANIFEST.md                              human-readable index

Files are written as bytes so segment separators are exact (CR unless a file
deliberately uses LF or CRLF).

Resource counts in expected.json are derived from RULES below (the HL7
V2-to-FHIR IG segment maps, restricted to mappings that are unconditional
for the given message structure).  Keys that are not certain for a structure
are simply omitted (e.g. Specimen in ORU/OML, because OBR also maps to
Specimen there; Observation in VXU/MDM).
"""
import json
import os
import re
import sys
from collections import Counter, OrderedDict

ROOT = os.path.dirname(os.path.abspath(__file__))
ENC = r'^~\&'

MESSAGES = []   # dicts, see add()
EXTRA_FILES = []  # (subdir, name, bytes, vendor, kind, desc)

# --------------------------------------------------------------------------
# Canonical message structures (HL7 v2.5+ trigger-event -> structure table)
# --------------------------------------------------------------------------
STRUCTURE = {
    ('ADT', 'A01'): 'ADT_A01', ('ADT', 'A02'): 'ADT_A02', ('ADT', 'A03'): 'ADT_A03',
    ('ADT', 'A04'): 'ADT_A01', ('ADT', 'A05'): 'ADT_A05', ('ADT', 'A06'): 'ADT_A06',
    ('ADT', 'A07'): 'ADT_A06', ('ADT', 'A08'): 'ADT_A01', ('ADT', 'A11'): 'ADT_A09',
    ('ADT', 'A13'): 'ADT_A01', ('ADT', 'A14'): 'ADT_A05', ('ADT', 'A28'): 'ADT_A05',
    ('ADT', 'A31'): 'ADT_A05', ('ADT', 'A40'): 'ADT_A39',
    ('ADT', 'A15'): 'ADT_A15', ('ADT', 'A16'): 'ADT_A16', ('ADT', 'A21'): 'ADT_A21',
    ('ADT', 'A22'): 'ADT_A21', ('ADT', 'A25'): 'ADT_A21', ('ADT', 'A26'): 'ADT_A21',
    ('ADT', 'A27'): 'ADT_A21', ('ADT', 'A24'): 'ADT_A24', ('ADT', 'A45'): 'ADT_A45',
    ('ADT', 'A47'): 'ADT_A30', ('ADT', 'A60'): 'ADT_A60',
    ('ORU', 'R01'): 'ORU_R01', ('ORM', 'O01'): 'ORM_O01', ('OML', 'O21'): 'OML_O21',
    ('SIU', 'S12'): 'SIU_S12', ('SIU', 'S13'): 'SIU_S12', ('SIU', 'S14'): 'SIU_S12',
    ('SIU', 'S15'): 'SIU_S12', ('SIU', 'S26'): 'SIU_S12',
    ('MDM', 'T02'): 'MDM_T02', ('MDM', 'T06'): 'MDM_T02', ('MDM', 'T10'): 'MDM_T02',
    ('VXU', 'V04'): 'VXU_V04',
    ('ADT', 'A17'): 'ADT_A17', ('ADT', 'A23'): 'ADT_A21', ('ADT', 'A29'): 'ADT_A21', ('ADT', 'A37'): 'ADT_A37',
    ('MDM', 'T01'): 'MDM_T01', ('MDM', 'T03'): 'MDM_T01', ('MDM', 'T05'): 'MDM_T01', ('MDM', 'T07'): 'MDM_T01',
    ('MDM', 'T09'): 'MDM_T01', ('MDM', 'T11'): 'MDM_T01',
    ('BAR', 'P01'): 'BAR_P01', ('BAR', 'P05'): 'BAR_P01', ('BAR', 'P06'): 'BAR_P06',
    ('DFT', 'P03'): 'DFT_P03', ('DFT', 'P11'): 'DFT_P11',
    ('RDE', 'O11'): 'RDE_O11', ('RDS', 'O13'): 'RDS_O13', ('OMG', 'O19'): 'OMG_O19', ('OUL', 'R22'): 'OUL_R22',
    ('REF', 'I12'): 'REF_I12', ('PPR', 'PC1'): 'PPR_PC1',
}

# --------------------------------------------------------------------------
# Segment -> FHIR resource counting rules (one resource per segment occurrence)
# Only mappings that are unconditional in the IG message maps are listed.
# --------------------------------------------------------------------------
_ADT = {'PID': 'Patient', 'PV1': 'Encounter', 'NK1': 'RelatedPerson',
        'AL1': 'AllergyIntolerance', 'DG1': 'Condition', 'IN1': 'Coverage',
        'OBX': 'Observation', 'PR1': 'Procedure', 'GT1': 'Account'}
RULES = {
    'ADT_A01': _ADT, 'ADT_A02': {'PID': 'Patient', 'PV1': 'Encounter', 'OBX': 'Observation'},
    'ADT_A03': _ADT, 'ADT_A05': _ADT, 'ADT_A06': _ADT,
    'ADT_A09': {'PID': 'Patient', 'PV1': 'Encounter', 'DG1': 'Condition', 'OBX': 'Observation'},
    # No IG message map: the segment maps the converter applies (see docs/CONVERSION.md)
    'ADT_A15': {'PID': 'Patient', 'PV1': 'Encounter', 'DG1': 'Condition', 'OBX': 'Observation'},
    'ADT_A16': _ADT,
    'ADT_A21': {'PID': 'Patient', 'PV1': 'Encounter', 'OBX': 'Observation'},
    'ADT_A24': {'PID': 'Patient', 'PV1': 'Encounter'},
    'ADT_A30': {'PID': 'Patient', 'MRG': 'Patient'},
    'ADT_A45': {'PID': 'Patient', 'PV1': 'Encounter'},
    'ADT_A60': {'PID': 'Patient', 'PV1': 'Encounter', 'IAM': 'AllergyIntolerance'},
    # ADT_A39 (A40 merge): no IG message map in the reference set -> no counts asserted
    'ADT_A39': {},
    'ORU_R01': {'PID': 'Patient', 'PV1': 'Encounter', 'NK1': 'RelatedPerson',
                'OBR': 'DiagnosticReport', 'OBX': 'Observation'},
    'ORM_O01': {'PID': 'Patient', 'PV1': 'Encounter', 'AL1': 'AllergyIntolerance',
                'IN1': 'Coverage', 'OBR': 'ServiceRequest', 'DG1': 'Condition',
                'OBX': 'Observation'},
    'OML_O21': {'PID': 'Patient', 'PV1': 'Encounter', 'NK1': 'RelatedPerson',
                'AL1': 'AllergyIntolerance', 'IN1': 'Coverage', 'OBR': 'ServiceRequest',
                'DG1': 'Condition', 'OBX': 'Observation'},
    'SIU_S12': {'SCH': 'Appointment', 'PID': 'Patient', 'PV1': 'Encounter',
                'DG1': 'Condition', 'OBX': 'Observation'},
    # MDM OBX content goes into DocumentReference (not Observation)
    'MDM_T02': {'PID': 'Patient', 'PV1': 'Encounter', 'TXA': 'DocumentReference'},
    # VXU: OBX (VIS, eligibility) and PV1 mappings are not unconditional -> omitted
    'VXU_V04': {'PID': 'Patient', 'NK1': 'RelatedPerson', 'RXA': 'Immunization'},
    # IG message map ADT_A17: two Patients, two Encounters
    'ADT_A17': {'PID': 'Patient', 'PV1': 'Encounter', 'OBX': 'Observation'},
    'ADT_A37': {'PID': 'Patient', 'PV1': 'Encounter'},
    'MDM_T01': {'PID': 'Patient', 'PV1': 'Encounter', 'TXA': 'DocumentReference'},
    # No IG message maps from here on: the segment maps the converter applies (docs/CONVERSION.md).
    # BAR/DFT: one Account when PID-18 or a GT1 is sent (see count_resources); FT1 charges only.
    'BAR_P01': dict(_ADT),
    'BAR_P06': {'PID': 'Patient', 'PV1': 'Encounter'},
    'DFT_P03': {'PID': 'Patient', 'PV1': 'Encounter', 'DG1': 'Condition', 'PR1': 'Procedure',
                'IN1': 'Coverage', 'GT1': 'Account', 'FT1': 'ChargeItem'},
    'DFT_P11': {'PID': 'Patient', 'PV1': 'Encounter', 'DG1': 'Condition', 'PR1': 'Procedure',
                'IN1': 'Coverage', 'GT1': 'Account', 'FT1': 'ChargeItem'},
    'RDE_O11': {'PID': 'Patient', 'PV1': 'Encounter', 'AL1': 'AllergyIntolerance', 'IN1': 'Coverage',
                'RXE': 'MedicationRequest', 'OBX': 'Observation'},
    'RDS_O13': {'PID': 'Patient', 'PV1': 'Encounter', 'AL1': 'AllergyIntolerance',
                'RXE': 'MedicationRequest', 'RXD': 'MedicationDispense', 'OBX': 'Observation'},
    'OMG_O19': {'PID': 'Patient', 'PV1': 'Encounter', 'NK1': 'RelatedPerson', 'AL1': 'AllergyIntolerance',
                'IN1': 'Coverage', 'OBR': 'ServiceRequest', 'DG1': 'Condition', 'OBX': 'Observation'},
    'OUL_R22': {'PID': 'Patient', 'PV1': 'Encounter', 'SPM': 'Specimen', 'OBR': 'DiagnosticReport',
                'OBX': 'Observation'},
    'REF_I12': {'PID': 'Patient', 'PV1': 'Encounter', 'NK1': 'RelatedPerson', 'RF1': 'ServiceRequest',
                'DG1': 'Condition', 'AL1': 'AllergyIntolerance', 'IN1': 'Coverage', 'PR1': 'Procedure',
                'OBR': 'DiagnosticReport', 'OBX': 'Observation'},
    'PPR_PC1': {'PID': 'Patient', 'PV1': 'Encounter', 'PRB': 'Condition', 'OBX': 'Observation'},
}
# ADT_A01 map: NK1 -> RelatedPerson only when NK1-3.1 NOT IN these
NK1_NOT_RELATEDPERSON = {'EMR', 'E', 'F', 'I', 'S'}


# --------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------
def seg(name, fields, fs='|'):
    """Build a segment from {field_index: value}; gaps become empty fields."""
    if isinstance(fields, (list, tuple)):
        fields = {i + 1: v for i, v in enumerate(fields)}
    n = max(fields) if fields else 0
    return fs.join([name] + [fields.get(i, '') for i in range(1, n + 1)])


def msh(app, fac, ts, mtype, ctrl, ver, rapp='HL7GW', rfac='FHIRHUB', proc='P',
        charset=None, enc=ENC, fs='|', ack=True, extra=None):
    f = {3: app, 4: fac, 5: rapp, 6: rfac, 7: ts, 9: mtype, 10: ctrl, 11: proc, 12: ver}
    if ack:
        f.update({15: 'AL', 16: 'NE', 17: 'USA'})
    if charset:
        f[18] = charset
    if extra:
        f.update(extra)
    n = max(f)
    return 'MSH' + fs + enc + fs + fs.join(f.get(i, '') for i in range(3, n + 1))


def add(vendor, mtype, trigger, segs, desc, sep='\r', encoding='utf-8', bom=False,
        drop=(), structure=None):
    """Register one message for hl7/.  `drop` removes uncertain resource keys."""
    MESSAGES.append(dict(vendor=vendor, mtype=mtype, trigger=trigger, segs=list(segs),
                         desc=desc, sep=sep, encoding=encoding, bom=bom, drop=set(drop),
                         structure=structure or STRUCTURE[(mtype, trigger)]))


def parse_msh(text):
    fs = text[3]
    fields = text.split(fs)
    # fields[0]='MSH', fields[1]=MSH-2, fields[n-1]=MSH-n
    return fs, fields[1], {i: fields[i - 1] for i in range(2, len(fields) + 1)}


def count_resources(structure, segs):
    fs, enc, _ = parse_msh(segs[0])
    cs = enc[0]
    rules = RULES[structure]
    c = Counter()
    for s in segs:
        sid = s[:3]
        if sid not in rules:
            continue
        if sid == 'GT1':
            # All GT1s are the guarantors of one Account; a guarantor other than the patient
            # (GT1-11 not SEL) with a name (GT1-3) is also a RelatedPerson.
            f = s.split(fs)
            get = lambda n: f[n] if len(f) > n else ''
            if get(11).split(cs)[0] != 'SEL' and get(3):
                c['RelatedPerson'] += 1
            c['Account'] = 1
            continue
        if sid == 'FT1':
            # Charges only: payments, adjustments and co-payments are no ChargeItem.
            f = s.split(fs)
            if (f[6] if len(f) > 6 else '').split(cs)[0] not in ('', 'CG', 'CD'):
                continue
        if sid == 'PID' and structure.startswith(('BAR', 'DFT')):
            # The billing account (PID[Account]) exists with PID-18 even without a GT1.
            f = s.split(fs)
            if len(f) > 18 and f[18]:
                c['Account'] = 1 if structure != 'BAR_P06' else c['Account'] + 1
        if sid == 'NK1':
            f = s.split(fs)
            rel = f[3].split(cs)[0] if len(f) > 3 else ''
            if rel in NK1_NOT_RELATEDPERSON:
                continue
        c[rules[sid]] += 1
    return c


# ==========================================================================
# GROUP 1: ADT (A01, A02, A03, A04, A05, A06, A07, A08)
# ==========================================================================

# --- Epic A01: full inpatient admit, v2.5.1, MSH-9.3, -0500 offsets --------
add('epic', 'ADT', 'A01', [
    msh('EPIC', 'UHMC^2.16.840.1.113883.3.9999.1^ISO', '20260315083000-0500',
        'ADT^A01^ADT_A01', 'EPC2026031508300001', '2.5.1'),
    r'EVN|A01|20260315083000-0500|||JSMITH^Smith^Jane^^^^^^UHMC|20260315082500-0500|UHMC',
    seg('PID', {1: '1', 3: r'E1000001^^^UHMC^MR~999-12-3456^^^SSA^SS~900100001^^^EMPI^PI',
                5: r'Carter^Evelyn^Rose^^Ms.^^L~Carter^Eve^^^^^N', 6: 'Hughes^^^^^^M',
                7: '19780412', 8: 'F', 10: '2106-3^White^CDCREC',
                11: r'1200 Elm St^Apt 4B^Springfield^IL^62704^USA^H',
                13: r'^PRN^PH^^1^217^5550142~^NET^Internet^evelyn.carter@example.com',
                14: '^WPN^PH^^1^217^5550199', 15: 'eng^English^ISO6392',
                16: 'M^Married^HL70002', 18: 'A2026031500001^^^UHMC^AN',
                22: '2186-5^Not Hispanic or Latino^CDCREC'}),
    seg('PD1', {3: 'Springfield Family Practice^^5001', 4: '4455^Nguyen^Tam^^^Dr^MD^^^^^^NPI'}),
    r'ROL|1|AD|PP^Primary Care Provider^HL70443|4455^Nguyen^Tam^^^Dr^MD',
    seg('NK1', {1: '1', 2: 'Carter^Daniel^J', 3: 'SPO^Spouse^HL70063',
                4: '1200 Elm St^^Springfield^IL^62704^USA', 5: '^PRN^PH^^1^217^5550143',
                7: 'EC^Emergency Contact^HL70131'}),
    seg('NK1', {1: '2', 2: 'Hughes^Margaret', 3: 'MTH^Mother^HL70063',
                5: '^PRN^PH^^1^217^5550177', 7: 'N^Next-of-Kin^HL70131'}),
    seg('PV1', {1: '1', 2: 'I', 3: '4W^401^A^UHMC^^^^4', 4: 'E^Emergency^HL70007',
                7: '1001^Welby^Marcus^A^^Dr^MD^^^^^^NPI', 8: '2002^Referrer^Rita^^^Dr^MD',
                10: 'MED', 14: '7^Emergency Room^HL70023', 17: '1001^Welby^Marcus^A^^Dr^MD',
                18: 'IP', 19: 'V2026031500001^^^UHMC^VN', 39: 'UHMC',
                44: '20260315081500-0500'}),
    r'PV2|||R07.9^Chest pain, unspecified^I10||||||20260318|3',
    r'ROL|2|AD|AT^Attending^HL70443|1001^Welby^Marcus^A^^Dr^MD',
    r'OBX|1|NM|8302-2^Body height^LN||172|cm^centimeter^UCUM|||||F|||20260315083000-0500',
    r'OBX|2|NM|29463-7^Body weight^LN||68.5|kg^kilogram^UCUM|||||F|||20260315083000-0500',
    r'AL1|1|DA^Drug allergy^HL70127|7980^Penicillin G^RXNORM|SV^Severe^HL70128|Anaphylaxis|20100101',
    r'AL1|2|FA^Food allergy^HL70127|91935009^Allergy to peanut^SCT|MO^Moderate^HL70128|Hives',
    r'AL1|3|EA^Environmental allergy^HL70127|256259004^Pollen^SCT|MI^Mild^HL70128|Sneezing~Watery eyes',
    r'DG1|1||R07.9^Chest pain, unspecified^I10||20260315|A^Admitting^HL70052',
    r'DG1|2||I10^Essential (primary) hypertension^I10||20260315|W^Working^HL70052',
    seg('GT1', {1: '1', 3: 'Carter^Evelyn^Rose', 5: '1200 Elm St^^Springfield^IL^62704^USA',
                6: '^PRN^PH^^1^217^5550142', 8: '19780412', 9: 'F', 11: 'SEL^Self^HL70063'}),
    seg('IN1', {1: '1', 2: 'PPO^Preferred Provider Organization^HL70072', 3: '60054^^^^NIIP',
                4: 'Aetna Health (FAKE)', 5: 'PO Box 900001^^El Paso^TX^79998',
                8: 'GRP-12345', 12: '20260101', 13: '20261231',
                16: 'Carter^Evelyn^Rose', 17: 'SEL^Self^HL70063', 18: '19780412',
                36: 'W123456789'}),
    r'IN2|1|999-12-3456',
    seg('IN1', {1: '2', 2: 'MC^Medicare^HL70072', 3: 'MCR^^^^NIIP', 4: 'Medicare Part A (FAKE)',
                12: '20250101', 16: 'Carter^Evelyn^Rose', 17: 'SEL^Self^HL70063', 36: '1EG4TE5MK72'}),
    r'ZPD|1|Y|MYCHART_ACTIVE|20250101',
], 'Full inpatient admit: PID-3 MR/SS/EMPI, PD1, ROL x2, NK1 x2, PV1/PV2, OBX NM x2, AL1 x3, '
   'DG1 x2, GT1, IN1/IN2 + 2nd IN1, ZPD; -0500 offsets; MSH-9.3 present')

# --- Cerner A01: v2.3, no MSH-9.3, NK1 employer (EMR -> not RelatedPerson), escapes, ZPV
add('cerner', 'ADT', 'A01', [
    msh('HNAM', 'CMC', '202603151015', 'ADT^A01', 'Q1987654321T1', '2.3', rapp='FHIRGW',
        rfac='HUB', ack=False),
    r'EVN|A01|202603151015',
    seg('PID', {1: '1', 2: '7700123^^^CMC', 3: r'7700123^^^CMC^MR~999-44-1122^^^USSSA^SS',
                5: r'Garcia\T\Lopez^Maria^Elena', 7: '19650923', 8: 'F',
                11: r'45 Ocean Ave^^Portland^ME^04101', 13: '(207)555-0101',
                18: '88001234^^^CMC^AN', 19: '999-44-1122'}),
    seg('NK1', {1: '1', 2: 'Lopez^Roberto', 3: 'HUS^Husband^HL70063', 5: '(207)555-0102'}),
    seg('NK1', {1: '2', 2: 'Acme Widgets (FAKE)', 3: 'EMR^Employer^HL70063', 5: '(207)555-0900',
                7: 'E^Employer^HL70131'}),
    seg('NK1', {1: '3', 2: 'Lopez^Ana', 3: 'DAU^Daughter^HL70063', 5: '(207)555-0103'}),
    seg('PV1', {1: '1', 2: 'I', 3: '3N^312^B^CMC', 4: 'U', 7: '3110^Osler^William^^^Dr',
                10: 'SUR', 19: '88001234^^^CMC^VN', 44: '202603151000'}),
    r'AL1|1|DA|1191^Aspirin^RXNORM|MO|GI upset',
    r'DG1|1|I9|540.9^Acute appendicitis^I9|Acute appendicitis|202603151000|A',
    r'ZPV|1|\H\VIP\N\ flag reviewed \E\ cleared|CMC-SEC',
], 'v2.3 admit without MSH-9.3; NK1 with EMR employer (excluded from RelatedPerson count), '
   '\\T\\ in family name, \\H\\ \\N\\ \\E\\ in Z-segment ZPV; timestamps without offsets (YYYYMMDDHHMM)')

# --- Meditech A01: v2.4, ISO 8859/1 encoded (e-acute is byte 0xE9) ----------
add('meditech', 'ADT', 'A01', [
    msh('MEDITECH', 'MTHOSP', '20260316141500', 'ADT^A01^ADT_A01', 'MT.20260316.000101', '2.4',
        charset='8859/1'),
    r'EVN|A01|20260316141500',
    seg('PID', {1: '1', 3: r'M000457^^^MTHOSP^MR~999-33-7788^^^SSA^SS',
                5: 'Bélanger^Renée^Andrée', 7: '19590101', 8: 'F',
                11: '12 Rue Sainte-Thérèse^^Québec^QC^G1R 1A1^CAN', 15: 'fre^French^ISO6392'}),
    seg('NK1', {1: '1', 2: 'Bélanger^Hélène', 3: 'SIS^Sister^HL70063', 5: '^PRN^PH^^1^418^5550155'}),
    seg('PV1', {1: '1', 2: 'I', 3: 'MED2^204^1^MTHOSP', 4: 'R', 7: '7001^Lefèvre^Gérard^^^Dr',
                19: 'MTV0000457^^^MTHOSP^VN', 44: '20260316140000'}),
    r'AL1|1|DA|2670^Codéine^RXNORM|SV|Réaction cutanée',
    r'DG1|1||J18.9^Pneumonie, non précisée^I10||20260316|A',
], 'MSH-18 8859/1 with latin-1 bytes (é = 0xE9) in PID-5/NK1/PV1/AL1/DG1', encoding='latin-1')

# --- Athena A01: v2.8, fractional seconds + offset, +0530 -----------------
add('athena', 'ADT', 'A01', [
    msh('ATHENANET', 'ATHENA_CLINIC_8821', '20260315083000.1234-0500', 'ADT^A01^ADT_A01',
        'ATH-5d2c9e1a-0001', '2.8'),
    r'EVN||20260315083000.1234-0500||||20260315190000+0530',
    seg('PID', {1: '1', 3: r'8821-44501^^^ATHENA^MR~A7788990^^^ATHENA_EMPI^PI',
                5: 'Patel^Arjun^K', 7: '19910704', 8: 'M',
                11: '22 MG Road^^Bengaluru^KA^560001^IND', 13: '^PRN^CP^^91^80^55501234'}),
    r'PRT|1|AD||PP^Primary Care Provider^HL70443|7788^Rao^Meera^^^Dr^MD|||Athena Family Clinic^^8821',
    seg('PV1', {1: '1', 2: 'I', 3: 'ICU^07^01^ATHHOSP', 4: 'E', 7: '5150^House^Gregory^^^Dr^MD',
                19: 'ATHV-44501-01^^^ATHENA^VN', 44: '20260315075959.5-0500'}),
    r'ROL|1|AD|AT^Attending^HL70443|5150^House^Gregory^^^Dr^MD||20260315075959.5-0500',
    r'PRT|2|AD||CP^Consulting Provider^HL70443|6120^Grey^Meredith^^^Dr^MD||||ICU^07^^ATHHOSP||20260315090000-0500',
    r'OBX|1|NM|8310-5^Body temperature^LN||38.4|Cel^degree Celsius^UCUM|36.1-37.2|H|||F|||20260315080012.25-0500',
    r'DG1|1||A41.9^Sepsis, unspecified organism^I10||20260315|A',
], 'v2.8 admit: fractional-second timestamps with -0500, EVN-6 with +0530, PV1-44 with .5 seconds, ROL with dates; '
   'PRT PP after PID (general practitioner role with organization), PRT CP after PV1 (consulting role with location '
   'and start)')

# --- OpenEMR A01: v2.3.1, minimal, MSH-9.3 absent ------------------------
add('openemr', 'ADT', 'A01', [
    msh('OPENEMR', 'Greenfield Clinic', '20260317', 'ADT^A01', 'OEMR-000101', '2.3.1', ack=False),
    r'EVN|A01|20260317',
    seg('PID', {1: '1', 3: '1042^^^OPENEMR^MR', 5: 'Doe^Johnathan', 7: '1948', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'I', 3: 'WARD A^^^Greenfield Clinic'}),
], 'Minimal v2.3.1 admit; MSH-7 YYYYMMDD only; PID-7 year precision (YYYY); MSH-9.3 absent')

# --- Epic A02: transfer, PV1-6 prior location ------------------------------
add('epic', 'ADT', 'A02', [
    msh('EPIC', 'UHMC', '20260316091500-0500', 'ADT^A02^ADT_A02', 'EPC2026031609150002', '2.5.1'),
    r'EVN|A02|20260316091500-0500||||20260316091000-0500',
    seg('PID', {1: '1', 3: r'E1000001^^^UHMC^MR~900100001^^^EMPI^PI', 5: 'Carter^Evelyn^Rose',
                7: '19780412', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'I', 3: 'ICU^12^A^UHMC', 6: '4W^401^A^UHMC',
                7: '1001^Welby^Marcus^A^^Dr^MD', 10: 'MED', 19: 'V2026031500001^^^UHMC^VN',
                44: '20260315081500-0500'}),
    r'ROL|1|UC|AT^Attending^HL70443|1100^Shepherd^Derek^^^Dr^MD',
    r'OBX|1|CWE|8867-4^Heart rate^LN||Tachycardia^Tachycardia^L||||||F',
], 'Transfer with PV1-3 new / PV1-6 prior location; ROL after PV1; OBX CWE')

# --- Meditech A02: v2.4, LF separators ------------------------------------
add('meditech', 'ADT', 'A02', [
    msh('MEDITECH', 'MTHOSP', '20260316160000', 'ADT^A02', 'MT.20260316.000102', '2.4'),
    r'EVN|A02|20260316160000',
    seg('PID', {1: '1', 3: 'M000457^^^MTHOSP^MR', 5: 'Belanger^Renee', 7: '19590101', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'I', 3: 'TEL^301^2^MTHOSP', 6: 'MED2^204^1^MTHOSP', 19: 'MTV0000457^^^MTHOSP^VN'}),
], 'LF (0x0A) segment separators instead of CR', sep='\n')

# --- Athena A03: discharge, v2.5 -------------------------------------------
add('athena', 'ADT', 'A03', [
    msh('ATHENANET', 'ATHENA_CLINIC_8821', '20260320120000-0500', 'ADT^A03^ADT_A03',
        'ATH-5d2c9e1a-0003', '2.5'),
    r'EVN|A03|20260320120000-0500',
    seg('PID', {1: '1', 3: '8821-44501^^^ATHENA^MR', 5: 'Patel^Arjun^K', 7: '19910704', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'I', 3: 'ICU^07^01^ATHHOSP', 7: '5150^House^Gregory^^^Dr^MD',
                19: 'ATHV-44501-01^^^ATHENA^VN', 36: '01^Discharged to home^HL70112',
                44: '20260315075959-0500', 45: '20260320113000-0500'}),
    r'DG1|1||A41.9^Sepsis, unspecified organism^I10||20260320|F^Final^HL70052',
    r'DG1|2||N17.9^Acute kidney failure, unspecified^I10||20260320|F^Final^HL70052',
    r'OBX|1|ST|8659-5^Discharge condition^LN||Stable, ambulating||||||F',
], 'Discharge: PV1-36 disposition, PV1-45 discharge time, final DG1 x2, OBX ST')

# --- Cerner A03: v2.5, CRLF separators --------------------------------------
add('cerner', 'ADT', 'A03', [
    msh('HNAM', 'CMC', '20260318093000', 'ADT^A03', 'Q1987654321T3', '2.5'),
    r'EVN|A03|20260318093000',
    seg('PID', {1: '1', 3: '7700123^^^CMC^MR', 5: r'Garcia\T\Lopez^Maria^Elena', 7: '19650923', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'I', 3: '3N^312^B^CMC', 19: '88001234^^^CMC^VN',
                44: '202603151000', 45: '20260318090000'}),
    r'DG1|1||K35.80^Unspecified acute appendicitis^I10||20260318|F',
], 'CRLF (0x0D 0x0A) segment separators', sep='\r\n')

# --- Epic A03: surgical discharge with procedures (PR1 -> Procedure) ---------
add('epic', 'ADT', 'A03', [
    msh('EPIC', 'UHMC^2.16.840.1.113883.3.9999.1^ISO', '20260322141500-0500',
        'ADT^A03^ADT_A03', 'EPC2026032214150007', '2.5.1'),
    r'EVN|A03|20260322141500-0500',
    seg('PID', {1: '1', 3: 'E1000077^^^UHMC^MR', 5: 'Brooks^Nathan^Lee', 7: '19820611', 8: 'M',
                10: '2054-5^Black or African American^CDCREC', 18: 'A2026031800077^^^UHMC^AN',
                22: '2186-5^Not Hispanic or Latino^CDCREC'}),
    seg('PV1', {1: '1', 2: 'I', 3: '5S^512^1^UHMC', 7: '3001^Cutter^Samuel^^^Dr^MD^^^^^^NPI',
                19: 'V2026031800077^^^UHMC^VN', 44: '20260318061000-0500',
                45: '20260322140000-0500'}),
    r'DG1|1||K35.80^Unspecified acute appendicitis^I10||20260318|F^Final^HL70052',
    seg('PR1', {1: '1', 3: '0DTJ4ZZ^Resection of Appendix, Percutaneous Endoscopic^ICD10PCS',
                5: '20260318074500-0500', 6: 'P^Procedure for treatment^HL70230', 7: '95',
                8: '2001^Gasman^Anne^^^Dr^MD^^^^^^NPI', 11: '3001^Cutter^Samuel^^^Dr^MD^^^^^^NPI',
                15: 'K35.80^Unspecified acute appendicitis^I10', 19: 'PX20260318-1^UHMC',
                23: 'OR^03^^UHMC'}),
    r'ROL|1|AD|AT^Attending^HL70443|3001^Cutter^Samuel^^^Dr^MD',
    seg('PR1', {1: '2', 3: '5A1945Z^Respiratory Ventilation, 24-96 Consecutive Hours^ICD10PCS',
                5: '20260318',
                12: '4100^Breath^Rita^^^^RT'}),
    seg('GT1', {1: '1', 2: 'G55012^^^UHMC', 3: 'Brooks^Karen^M', 5: '88 Birch Rd^^Springfield^IL^62704^USA',
                6: '^PRN^PH^^1^217^5550311', 8: '19840203', 9: 'F', 11: 'SPO^Spouse^HL70063',
                13: '20260318'}),
    seg('GT1', {1: '2', 11: 'EMP^Employee^HL70063', 21: 'Springfield Tool Works (FAKE)^^^^^UHMC'}),
], 'Surgical discharge: PR1 x2 (ICD-10-PCS, PR1-5 with PR1-7 minutes -> period, anesthesiologist, '
   'surgeon, PR1-15 reason, PR1-19 id, PR1-23 location; date-only PR1-5), ROL in the PROCEDURE group; '
   'GT1 x2 (spouse -> RelatedPerson, employer GT1-21 -> Organization) as guarantors of the PID-18 Account')

# --- ADT events without an IG message map (pending, leave, link, move, identifier change)
add('cerner', 'ADT', 'A15', [
    msh('HNAM', 'CMC', '20260321081500', 'ADT^A15', 'Q1987654321T15', '2.5'),
    r'EVN|A15|20260321081500|20260321100000',
    seg('PID', {1: '1', 3: '7700123^^^CMC^MR', 5: r'Garcia\T\Lopez^Maria^Elena', 7: '19650923', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'I', 3: '3N^312^B^CMC', 11: 'ICU^04^1^CMC', 19: '88001234^^^CMC^VN',
                44: '202603151000'}),
    r'DG1|1||K35.80^Unspecified acute appendicitis^I10||20260318|W',
], 'Pending transfer (ADT_A15, no MSH-9.3): PV1-11 temporary location, EVN-3 planned time, DG1')

add('epic', 'ADT', 'A16', [
    msh('EPIC', 'UHMC^2.16.840.1.113883.3.9999.1^ISO', '20260322090000-0500',
        'ADT^A16^ADT_A16', 'EPC2026032209000016', '2.5.1'),
    r'EVN|A16|20260322090000-0500|20260322140000-0500',
    seg('PID', {1: '1', 3: 'E1000077^^^UHMC^MR', 5: 'Brooks^Nathan^Lee', 7: '19820611', 8: 'M'}),
    seg('NK1', {1: '1', 2: 'Brooks^Karen^M', 3: 'SPO^Spouse^HL70063', 5: '^PRN^PH^^1^217^5550311'}),
    seg('PV1', {1: '1', 2: 'I', 3: '5S^512^1^UHMC', 7: '3001^Cutter^Samuel^^^Dr^MD^^^^^^NPI',
                19: 'V2026031800077^^^UHMC^VN', 44: '20260318061000-0500'}),
    r'OBX|1|CWE|8689-2^History of Immunization^LN||N^No^HL70136||||||F',
    r'AL1|1|DA^Drug allergy^HL70127|2670^Codeine^RXNORM|MO^Moderate^HL70128|Nausea',
    r'DG1|1||K35.80^Unspecified acute appendicitis^I10||20260318|F^Final^HL70052',
], 'Pending discharge (ADT_A16): NK1, OBX CWE, AL1, DG1')

add('meditech', 'ADT', 'A21', [
    msh('MEDITECH', 'MTHOSP', '20260323101500+0100', 'ADT^A21^ADT_A21', 'MT20260323-0021', '2.4'),
    r'EVN|A21|20260323101500+0100',
    seg('PID', {1: '1', 3: 'MT0000457^^^MTHOSP^MR', 5: 'Dubois^Amelie', 7: '19700228', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'I', 3: 'MED2^204^1^MTHOSP', 19: 'MTV0000457^^^MTHOSP^VN',
                44: '20260320083000+0100'}),
], 'Leave of absence (ADT_A21): Encounter onleave')

add('athena', 'ADT', 'A25', [
    msh('ATHENANET', 'ATHENA_CLINIC_8821', '20260320093000-0500', 'ADT^A25^ADT_A21',
        'ATH-5d2c9e1a-0025', '2.5.1'),
    r'EVN|A25|20260320093000-0500',
    seg('PID', {1: '1', 3: '8821-44501^^^ATHENA^MR', 5: 'Patel^Arjun^K', 7: '19910704', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'I', 3: 'ICU^07^01^ATHHOSP', 19: 'ATHV-44501-01^^^ATHENA^VN',
                44: '20260315075959-0500'}),
    r'OBX|1|ST|8659-5^Discharge condition^LN||Discharge postponed||||||F',
], 'Cancel pending discharge (ADT_A21 structure): OBX ST')

add('openemr', 'ADT', 'A27', [
    msh('OPENEMR', 'Greenfield Clinic', '20260319110000-0600', 'ADT^A27', 'OEMR-000127', '2.5.1'),
    r'EVN|A27|20260319110000-0600',
    seg('PID', {1: '1', 3: r'1043^^^OPENEMR^MR', 5: 'Muñoz^Zoë^Inés', 7: '19880505', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'P', 3: 'SURG^^^Greenfield Clinic', 5: 'PRE-1043^^^OPENEMR',
                19: 'OE-V-1043^^^OPENEMR^VN'}),
], 'Cancel pending admit (ADT_A21 structure, no MSH-9.3): Encounter cancelled')

add('cerner', 'ADT', 'A24', [
    msh('HNAM', 'CMC', '20260324120000', 'ADT^A24^ADT_A24', 'Q1987654321T24', '2.5'),
    r'EVN|A24|20260324120000',
    seg('PID', {1: '1', 3: '7700123^^^CMC^MR', 5: r'Garcia\T\Lopez^Maria^Elena', 7: '19650923', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'CLIN^^^CMC', 19: '88009999^^^CMC^VN'}),
    seg('PID', {1: '2', 3: '7700999^^^CMC^MR', 5: 'Garcia^Maria', 7: '19650923', 8: 'F'}),
], 'Link patient information: two PIDs (PV1 with the first) linked seealso both ways')

add('epic', 'ADT', 'A45', [
    msh('EPIC', 'UHMC^2.16.840.1.113883.3.9999.1^ISO', '20260324150000-0500',
        'ADT^A45^ADT_A45', 'EPC2026032415000045', '2.5.1'),
    r'EVN|A45|20260324150000-0500',
    seg('PID', {1: '1', 3: 'E1000045^^^UHMC^MR', 5: 'Okafor^Chidi', 7: '19690214', 8: 'M'}),
    seg('MRG', {1: 'E1000046^^^UHMC^MR', 5: 'V2026032300045^^^UHMC^VN'}),
    seg('PV1', {1: '1', 2: 'I', 3: '4W^405^B^UHMC', 19: 'V2026032300045^^^UHMC^VN',
                44: '20260323081500-0500'}),
], 'Move visit information: MERGE_INFO (MRG prior patient + visit, PV1) -> the Encounter of the PID patient')

add('meditech', 'ADT', 'A47', [
    msh('MEDITECH', 'MTHOSP', '20260325091500+0100', 'ADT^A47^ADT_A30', 'MT20260325-0047', '2.5'),
    r'EVN|A47|20260325091500+0100',
    seg('PID', {1: '1', 3: 'MT0000458^^^MTHOSP^MR', 5: 'Dubois^Amelie', 7: '19700228', 8: 'F'}),
    seg('MRG', {1: 'MT0000457^^^MTHOSP^MR', 7: 'Dubois^Amelie'}),
], 'Change patient identifier list (ADT_A30): MRG-1 old MR replaced by PID-3')

add('athena', 'ADT', 'A60', [
    msh('ATHENANET', 'ATHENA_CLINIC_8821', '20260326101000-0500', 'ADT^A60^ADT_A60',
        'ATH-5d2c9e1a-0060', '2.5.1'),
    r'EVN|A60|20260326101000-0500',
    seg('PID', {1: '1', 3: '8821-44501^^^ATHENA^MR', 5: 'Patel^Arjun^K', 7: '19910704', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'FAMMED^^^ATHHOSP', 19: 'ATHV-44501-02^^^ATHENA^VN'}),
    seg('IAM', {1: '1', 2: 'DA^Drug allergy^HL70127', 3: '7980^Penicillin G^RXNORM',
                4: 'SV^Severe^HL70128', 5: 'Anaphylaxis', 6: 'A^Add^HL70323',
                7: 'ALG-44501-1^ATHENA', 11: '20120301', 13: '20260326100500-0500',
                17: 'active'}),
    seg('IAM', {1: '2', 2: 'FA^Food allergy^HL70127', 3: '91935009^Allergy to peanut^SCT',
                6: 'D^Delete^HL70323', 7: 'ALG-44501-2^ATHENA'}),
], 'Update adverse reaction information: IAM add (IAM-7 id, onset, reported time) and delete')

# --- OpenEMR A04: UTF-8 names, NK1 x3, AL1 x2, IN1/IN2 ----------------------
add('openemr', 'ADT', 'A04', [
    msh('OPENEMR', 'Greenfield Clinic', '20260317101500-0600', 'ADT^A04^ADT_A01', 'OEMR-000104',
        '2.5.1', charset='UNICODE UTF-8'),
    r'EVN|A04|20260317101500-0600',
    seg('PID', {1: '1', 3: r'1043^^^OPENEMR^MR~999-55-1212^^^SSA^SS', 5: 'Muñoz^Zoë^Inés',
                7: '20010214', 8: 'F', 11: 'Calle Año Nuevo 7^^Santa Fe^NM^87501^USA',
                13: '^PRN^CP^^1^505^5550188', 15: 'spa^Spanish^ISO6392'}),
    seg('NK1', {1: '1', 2: 'Muñoz^José', 3: 'FTH^Father^HL70063', 5: '^PRN^PH^^1^505^5550189'}),
    seg('NK1', {1: '2', 2: 'Peña^Inés', 3: 'MTH^Mother^HL70063', 5: '^PRN^PH^^1^505^5550190'}),
    seg('NK1', {1: '3', 2: 'Muñoz^Zoë^^^^^N', 3: 'SIB^Sibling^HL70063'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'CLINIC1^^^Greenfield Clinic', 7: '3301^Ortíz^Álvaro^^^Dr',
                19: 'OEV-1043-1^^^OPENEMR^VN', 44: '20260317101500-0600'}),
    r'AL1|1|DA|723^Amoxicillin^RXNORM|MO|Rash',
    r'AL1|2|MA|300916003^Latex allergy^SCT|SV|Contact urticaria',
    seg('IN1', {1: '1', 2: 'HMO^Health Maintenance Organization^HL70072', 3: 'NMHC01',
                4: 'Salud Nueva Mutual (FAKE)', 16: 'Muñoz^José', 17: 'CHD^Child^HL70063',
                36: 'SN-00991'}),
    r'IN2|1|999-55-1212',
], 'Outpatient registration with UTF-8 names (Muñoz, Zoë, Peña, Ortíz, Álvaro), MSH-18 UNICODE UTF-8; '
   'NK1 x3, AL1 x2, IN1/IN2; -0600 offset')

# --- Cerner A04: PID without PID-7, PID-8 "" explicit null, ZIN ------------
add('cerner', 'ADT', 'A04', [
    msh('HNAM', 'CMC^1.2.3.4.5^ISO', '20260319070000-0500', 'ADT^A04^ADT_A01', 'Q1987654321T4', '2.6'),
    r'EVN|A04|20260319070000-0500',
    seg('PID', {1: '1', 3: r'7700999^^^CMC^MR~U9900^^^CMC_EMPI^PI', 5: 'Unknown^Trauma^Bravo',
                8: '""', 10: '""', 11: '""'}),
    seg('PV1', {1: '1', 2: 'E', 3: 'ED^TR2^^CMC', 4: 'E', 19: '88009999^^^CMC^VN',
                44: '20260319065500-0500'}),
    r'ZIN|1|SELF-PAY|PENDING VERIFICATION|""',
], 'Trauma ED registration: PID-7 absent, PID-8/PID-10/PID-11 explicit null "", ZIN Z-segment')

# --- Meditech A05: pre-admit with PV2 expected admit date ------------------
add('meditech', 'ADT', 'A05', [
    msh('MEDITECH', 'MTHOSP', '20260310110000', 'ADT^A05^ADT_A05', 'MT.20260310.000105', '2.4'),
    r'EVN|A05|20260310110000',
    seg('PID', {1: '1', 3: r'M000812^^^MTHOSP^MR~999-21-4545^^^SSA^SS', 5: 'Okafor^Chidi^N',
                7: '19720530', 8: 'M', 11: '9 Harbor Rd^^Mystic^CT^06355'}),
    seg('NK1', {1: '1', 2: 'Okafor^Ngozi', 3: 'WIF^Wife^HL70063', 5: '(860)555-0133'}),
    seg('PV1', {1: '1', 2: 'P', 3: 'SDS^^^MTHOSP', 4: 'EL^Elective^HL70007', 5: 'PRE-812-01',
                7: '7002^Lister^Joseph^^^Dr', 19: 'MTV0000812^^^MTHOSP^VN'}),
    r'PV2||||||||20260324|2|||Elective knee arthroplasty',
    r'AL1|1|DA|10831^Sulfamethoxazole / Trimethoprim^RXNORM|MO|Rash',
    r'DG1|1||M17.11^Unilateral primary osteoarthritis, right knee^I10||20260310|A',
], 'Pre-admit: PV1-2 P, PV1-5 preadmit number, PV2-8 expected admit date, AL1, DG1, NK1')

# --- OpenEMR A05 ------------------------------------------------------------
add('openemr', 'ADT', 'A05', [
    msh('OPENEMR', 'Greenfield Clinic', '202603121300', 'ADT^A05', 'OEMR-000105', '2.5.1'),
    r'EVN|A05|202603121300',
    seg('PID', {1: '1', 3: '1055^^^OPENEMR^MR', 5: 'Kowalski^Piotr', 7: '196803', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'P', 3: 'SURG^^^Greenfield Clinic', 19: 'OEV-1055-1^^^OPENEMR^VN'}),
    r'PV2||||||||20260401',
], 'Pre-admit with PID-7 month precision (YYYYMM); MSH-7 minute precision; MSH-9.3 absent')

# --- Epic A06: outpatient -> inpatient with MRG ----------------------------
add('epic', 'ADT', 'A06', [
    msh('EPIC', 'UHMC', '20260321040000-0500', 'ADT^A06^ADT_A06', 'EPC2026032104000006', '2.5.1'),
    r'EVN|A06|20260321040000-0500',
    seg('PID', {1: '1', 3: r'E1000077^^^UHMC^MR~900100077^^^EMPI^PI', 5: 'Brooks^Terrence^L',
                7: '19830311', 8: 'M'}),
    r'MRG|E1000077^^^UHMC^MR||VOBS2026032000077^^^UHMC^VN',
    seg('NK1', {1: '1', 2: 'Brooks^Lena', 3: 'SPO^Spouse^HL70063', 5: '^PRN^PH^^1^312^5550122'}),
    seg('PV1', {1: '1', 2: 'I', 3: '5E^510^B^UHMC', 4: 'U', 7: '1003^Grey^Meredith^^^Dr^MD',
                19: 'V2026032100077^^^UHMC^VN', 44: '20260321040000-0500'}),
    r'DG1|1||I21.4^Non-ST elevation myocardial infarction^I10||20260321|A',
], 'Outpatient->inpatient change with MRG (prior visit number), NK1, DG1')

# --- Athena A07: inpatient -> outpatient ------------------------------------
add('athena', 'ADT', 'A07', [
    msh('ATHENANET', 'ATHENA_CLINIC_8821', '20260322150000-0500', 'ADT^A07^ADT_A06',
        'ATH-5d2c9e1a-0007', '2.5.1'),
    r'EVN|A07|20260322150000-0500',
    seg('PID', {1: '1', 3: '8821-47777^^^ATHENA^MR', 5: 'Lindqvist^Astrid', 7: '19990909', 8: 'F'}),
    r'MRG|8821-47777^^^ATHENA^MR||ATHV-47777-01^^^ATHENA^VN',
    seg('PV1', {1: '1', 2: 'O', 3: 'OBS^^^ATHHOSP', 19: 'ATHV-47777-02^^^ATHENA^VN',
                44: '20260322150000-0500'}),
], 'Inpatient->outpatient change (ADT_A06 structure) with MRG')

# --- Epic A08: v2.7 with 5-char MSH-2 ^~\&# and UTF-8 Nguyen (Vietnamese) ---
add('epic', 'ADT', 'A08', [
    msh('EPIC', 'UHMC', '20260323101010-0500', 'ADT^A08^ADT_A01', 'EPC2026032310101008', '2.7',
        enc=r'^~\&#', charset='UNICODE UTF-8'),
    r'EVN||20260323101010-0500',
    seg('PID', {1: '1', 3: r'E1000123^^^UHMC^MR~900100123^^^EMPI^PI~999-66-7070^^^SSA^SS',
                5: 'Nguyễn^Thị Lan^^^^^L~Nguyen^Lan^^^^^A', 7: '198502171430-0500', 8: 'F',
                11: '88 Lê Lợi^^Westminster^CA^92683^USA', 15: 'vie^Vietnamese^ISO6392'}),
    r'PD1|||UHMC Primary Care^^5002',
    seg('NK1', {1: '1', 2: 'Trần^Văn Minh', 3: 'SPO^Spouse^HL70063', 5: '^PRN^PH^^1^714^5550166'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'FM^^^UHMC', 19: 'V2026032300123^^^UHMC^VN'}),
    r'AL1|1|DA^Drug allergy^HL70127|7052^Morphine^RXNORM|MO^Moderate^HL70128|Nausea',
], 'v2.7 demographics update, MSH-2 5-char ^~\\&# (truncation char), UTF-8 Vietnamese (Nguyễn, Trần), '
   'PID-7 with time of birth and offset, alias names')

# --- Cerner A08: component separator '*' ----------------------------------
add('cerner', 'ADT', 'A08', [
    msh('HNAM', 'CMC', '20260323111500', 'ADT^A08', 'Q1987654321T8', '2.3.1', enc=r'*~\&').replace('^', '*'),
    r'EVN|A08|20260323111500',
    r'PID|1||7700123***CMC*MR~999-44-1122***SSA*SS||Garcia\T\Lopez*Maria*Elena||19650923|F|||45 Ocean Ave^Rear**Portland*ME*04101||(207)555-0101',
    r'NK1|1|Lopez*Roberto|HUS*Husband*HL70063||(207)555-0102',
    r'PV1|1|O|CLIN*3**CMC||||||||||||||||88001235***CMC*VN',
], "Non-default component separator: MSH|*~\\&| -- all components use '*'; literal '^' inside PID-11.1 (street) "
   'is data, not a separator')

# --- OpenEMR A08: UTF-8 BOM before MSH --------------------------------------
add('openemr', 'ADT', 'A08', [
    msh('OPENEMR', 'Greenfield Clinic', '20260324080000-0600', 'ADT^A08^ADT_A01', 'OEMR-000108',
        '2.5.1', charset='UNICODE UTF-8'),
    r'EVN|A08|20260324080000-0600',
    seg('PID', {1: '1', 3: '1043^^^OPENEMR^MR', 5: 'Muñoz^Zoë^Inés', 7: '20010214', 8: 'F',
                11: '15 Plaza de la Constitución^^Santa Fe^NM^87501^USA'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'CLINIC1^^^Greenfield Clinic', 19: 'OEV-1043-2^^^OPENEMR^VN'}),
], 'File starts with a UTF-8 BOM (EF BB BF) before MSH; UTF-8 content', bom=True)

# --- Meditech A08: v2.4 address update ---------------------------------------
add('meditech', 'ADT', 'A08', [
    msh('MEDITECH', 'MTCLINIC', '20260324123000+01', 'ADT^A08^ADT_A01', 'MT.20260324.000108', '2.4'),
    r'EVN|A08|20260324123000+01',
    seg('PID', {1: '1', 3: r'M000812^^^MTHOSP^MR', 5: 'Okafor^Chidi^N', 7: '19720530', 8: 'M',
                11: r'9 Harbor Rd^^Mystic^CT^06355~PO Box 12^^Mystic^CT^06355^^M'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'CLIN^^^MTCLINIC'}),
    r'OBX|1|ST|ADDR-NOTE^Address note^L||Mail to PO box \F\ home for visits||||||F',
], "Update with hour-only offset '+01' on MSH-7/EVN-2, repeating PID-11 addresses, \\F\\ escape in OBX ST")

# --- Athena A08: v2.3, escapes in names ------------------------------------
add('athena', 'ADT', 'A08', [
    msh('ATHENANET', 'ATHENA_CLINIC_1207', '20260325094500', 'ADT^A08', 'ATH-5d2c9e1a-0008', '2.3',
        ack=False),
    r'EVN|A08|20260325094500',
    seg('PID', {1: '1', 3: '1207-300^^^ATHENA^MR', 5: r"O'Brien\S\Shea^Siobhan", 7: '19770101', 8: 'F',
                11: r'1 Main St\R\Rear^^Boston^MA^02101'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'PEDS^^^ATHENA_CLINIC_1207'}),
], 'v2.3, \\S\\ in family name (literal ^) and \\R\\ in street (literal ~); no MSH-9.3')

# ==========================================================================
# GROUP 2: ADT (A11, A13, A14, A28, A31, A40)
# ==========================================================================

# --- Meditech A11: cancel admit, v2.3 ---------------------------------------
add('meditech', 'ADT', 'A11', [
    msh('MEDITECH', 'MTHOSP', '20260316170500', 'ADT^A11', 'MT.20260316.000111', '2.3', ack=False),
    r'EVN|A11|20260316170500|||MTUSER01',
    seg('PID', {1: '1', 3: 'M000999^^^MTHOSP^MR', 5: 'Haddad^Yusuf', 7: '19600229', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'I', 3: 'MED2^210^1^MTHOSP', 19: 'MTV0000999^^^MTHOSP^VN',
                44: '20260316150000'}),
], 'Cancel admit (ADT_A09 structure), v2.3, leap-day birth date')

# --- Athena A11: v2.5.1 with MSH-9.3 ADT_A09 --------------------------------
add('athena', 'ADT', 'A11', [
    msh('ATHENANET', 'ATHENA_CLINIC_8821', '20260315091500-0500', 'ADT^A11^ADT_A09',
        'ATH-5d2c9e1a-0011', '2.5.1'),
    r'EVN|A11|20260315091500-0500',
    seg('PID', {1: '1', 3: '8821-44502^^^ATHENA^MR', 5: 'Brennan^Colm', 7: '19550817', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'I', 3: 'ICU^08^01^ATHHOSP', 19: 'ATHV-44502-01^^^ATHENA^VN'}),
    r'DG1|1||I50.9^Heart failure, unspecified^I10||20260315|A',
], 'Cancel admit with MSH-9.3 = ADT_A09, DG1')

# --- Epic A13: cancel discharge ---------------------------------------------
add('epic', 'ADT', 'A13', [
    msh('EPIC', 'UHMC', '20260320133000-0500', 'ADT^A13^ADT_A01', 'EPC2026032013300013', '2.5.1'),
    r'EVN|A13|20260320133000-0500',
    seg('PID', {1: '1', 3: r'E1000077^^^UHMC^MR~900100077^^^EMPI^PI', 5: 'Brooks^Terrence^L',
                7: '19830311', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'I', 3: '5E^510^B^UHMC', 7: '1003^Grey^Meredith^^^Dr^MD',
                19: 'V2026032100077^^^UHMC^VN', 44: '20260321040000-0500'}),
    r'PV2|||I21.4^NSTEMI^I10',
    r'AL1|1|DA|36567^Simvastatin^RXNORM|MI|Myalgia',
    r'DG1|1||I21.4^Non-ST elevation myocardial infarction^I10||20260321|W',
], 'Cancel discharge (ADT_A01 structure), AL1, DG1, PV2')

# --- Cerner A13: v2.4 without MSH-9.3 ---------------------------------------
add('cerner', 'ADT', 'A13', [
    msh('HNAM', 'CMC', '20260318101500', 'ADT^A13', 'Q1987654321T13', '2.4'),
    r'EVN|A13|20260318101500',
    seg('PID', {1: '1', 3: '7700123^^^CMC^MR', 5: r'Garcia\T\Lopez^Maria^Elena', 7: '19650923', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'I', 3: '3N^312^B^CMC', 19: '88001234^^^CMC^VN', 44: '202603151000'}),
], 'Cancel discharge, v2.4, no MSH-9.3')

# --- Athena A14: pending admit, v2.6 ----------------------------------------
add('athena', 'ADT', 'A14', [
    msh('ATHENANET', 'ATHENA_CLINIC_8821', '20260326084500-0500', 'ADT^A14^ADT_A05',
        'ATH-5d2c9e1a-0014', '2.6'),
    r'EVN|A14|20260326084500-0500',
    seg('PID', {1: '1', 3: r'8821-48888^^^ATHENA^MR~A7700001^^^ATHENA_EMPI^PI', 5: 'Mbeki^Thandi',
                7: '19880606', 8: 'F'}),
    seg('NK1', {1: '1', 2: 'Mbeki^Sipho', 3: 'BRO^Brother^HL70063', 5: '^PRN^CP^^1^646^5550111'}),
    seg('PV1', {1: '1', 2: 'I', 3: r'L\T\D^^^ATHHOSP', 4: 'L^Labor and Delivery^HL70007',
                19: 'ATHV-48888-01^^^ATHENA^VN'}),
    r'PV2||||||||20260327',
    r'DG1|1||O80^Encounter for full-term uncomplicated delivery^I10||20260326|A',
    seg('IN1', {1: '1', 2: 'PPO', 3: 'BCBS01', 4: 'Blue Plan (FAKE)', 36: 'XJH998877'}),
], "Pending admit, v2.6; PV1-3.1 location 'L&D' sent escaped as L\\T\\D; NK1, PV2, DG1, IN1")

# --- OpenEMR A28: add person, NO PV1 ----------------------------------------
add('openemr', 'ADT', 'A28', [
    msh('OPENEMR', 'Greenfield Clinic', '20260327090000-0600', 'ADT^A28^ADT_A05', 'OEMR-000128', '2.5.1'),
    r'EVN|A28|20260327090000-0600',
    seg('PID', {1: '1', 3: r'1077^^^OPENEMR^MR~999-88-0001^^^SSA^SS', 5: 'Reyes^Camila',
                7: '20150930', 8: 'F', 11: '301 Pine St^^Albuquerque^NM^87102'}),
    seg('NK1', {1: '1', 2: 'Reyes^Luis', 3: 'FTH^Father^HL70063', 5: '^PRN^PH^^1^505^5550177'}),
    r'AL1|1|FA|102263004^Eggs (edible)^SCT|MI|Hives',
], 'A28 without PV1 (missing segment that ADT_A05 marks required); NK1, AL1')

# --- Cerner A28: v2.8, no PV1, ZAL ------------------------------------------
add('cerner', 'ADT', 'A28', [
    msh('HNAM', 'CMC', '20260327101500-0500', 'ADT^A28^ADT_A05', 'Q1987654321T28', '2.8'),
    r'EVN||20260327101500-0500',
    seg('PID', {1: '1', 3: r'7701500^^^CMC^MR~U9901500^^^CMC_EMPI^PI~999-17-2020^^^SSA^SS',
                5: 'Ivanova^Katya', 7: '20040315', 8: 'F'}),
    r'PD1||||||||||||N^No^HL70136',
    r'AL1|1|DA|2670^Codeine^RXNORM|SV|Respiratory depression',
    r'AL1|2|DA|25037^Cefdinir^RXNORM|U|Unknown',
    r'ZAL|1|ALLERGY_REVIEWED|20260327|RN\T\MD sign-off',
], 'A28 v2.8 without PV1; PID-3 MR/PI/SS; AL1 x2; ZAL Z-segment with \\T\\')

# --- Epic A31: update person, PV1 class N (Encounter count not asserted) ----
add('epic', 'ADT', 'A31', [
    msh('EPIC', 'UHMC', '20260328120000-0500', 'ADT^A31^ADT_A05', 'EPC2026032812000031', '2.5.1'),
    r'EVN|A31|20260328120000-0500',
    seg('PID', {1: '1', 3: r'E1000123^^^UHMC^MR~900100123^^^EMPI^PI', 5: 'Nguyen^Lan',
                7: '19850217', 8: 'F', 13: '^PRN^PH^^1^714^5550199'}),
    seg('PV1', {1: '1', 2: 'N'}),
    r'OBX|1|CWE|72166-2^Tobacco smoking status^LN||8517006^Ex-smoker^SCT||||||F|||20260328',
], 'A31 with pseudo PV1 (PV1-2 N); Encounter intentionally not asserted; OBX CWE',
    drop=('Encounter',))

# --- Meditech A31: v2.4, LF separators, no PV1 -------------------------------
add('meditech', 'ADT', 'A31', [
    msh('MEDITECH', 'MTHOSP', '20260328143000', 'ADT^A31', 'MT.20260328.000131', '2.4'),
    r'EVN|A31|20260328143000',
    seg('PID', {1: '1', 3: 'M000812^^^MTHOSP^MR', 5: 'Okafor^Chidi^N', 7: '19720530', 8: 'M',
                13: '(860)555-0199'}),
    seg('NK1', {1: '1', 2: 'Okafor^Ngozi', 3: 'WIF^Wife^HL70063', 5: '(860)555-0133'}),
], 'LF (0x0A) separators (2nd LF file); A31 without PV1', sep='\n')

# --- Epic A40: single PID/MRG pair ------------------------------------------
add('epic', 'ADT', 'A40', [
    msh('EPIC', 'UHMC', '20260329010000-0500', 'ADT^A40^ADT_A39', 'EPC2026032901000040', '2.5.1'),
    r'EVN|A40|20260329010000-0500|||HIMUSER^Merge^Clerk',
    seg('PID', {1: '1', 3: r'E1000001^^^UHMC^MR~900100001^^^EMPI^PI', 5: 'Carter^Evelyn^Rose',
                7: '19780412', 8: 'F'}),
    r'MRG|E1000555^^^UHMC^MR~900100555^^^EMPI^PI||||||Carter^Evelyn',
], 'Patient merge: PID (survivor) + MRG (non-survivor MR and EMPI ids, MRG-7 prior name)')

# --- Cerner A40: two PID/MRG pairs ------------------------------------------
add('cerner', 'ADT', 'A40', [
    msh('HNAM', 'CMC', '20260329023000-0500', 'ADT^A40^ADT_A39', 'Q1987654321T40', '2.6'),
    r'EVN||20260329023000-0500',
    seg('PID', {1: '1', 3: '7700123^^^CMC^MR', 5: r'Garcia\T\Lopez^Maria^Elena', 7: '19650923', 8: 'F'}),
    r'MRG|7709001^^^CMC^MR',
    seg('PID', {1: '2', 3: '7701500^^^CMC^MR', 5: 'Ivanova^Katya', 7: '20040315', 8: 'F'}),
    r'MRG|7709002^^^CMC^MR',
], 'Merge with TWO PATIENT groups (PID+MRG, PID+MRG)')

# ==========================================================================
# GROUP 3: ORU^R01
# ==========================================================================
import base64 as _b64
_PDF_B64 = _b64.b64encode(b'%PDF-1.4\n% FAKE synthetic report, not a real document\n%%EOF\n').decode('ascii')
_PNG_B64 = _b64.b64encode(b'\x89PNG\r\n\x1a\nFAKE-IMAGE-BYTES').decode('ascii')

# --- Epic ORU: CBC + BMP, NM with units/ranges/flags, NTE after OBR and OBX --
add('epic', 'ORU', 'R01', [
    msh('EPIC', 'UHMC LAB', '20260315101500-0500', 'ORU^R01^ORU_R01', 'EPC2026031510150101', '2.5.1'),
    seg('PID', {1: '1', 3: r'E1000001^^^UHMC^MR~900100001^^^EMPI^PI', 5: 'Carter^Evelyn^Rose',
                7: '19780412', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'I', 3: '4W^401^A^UHMC', 19: 'V2026031500001^^^UHMC^VN'}),
    r'ORC|RE|ORD448801^EPIC|LAB998801^UHMCLAB||CM||||20260315084500-0500|||1001^Welby^Marcus^A^^Dr^MD',
    seg('OBR', {1: '1', 2: 'ORD448801^EPIC', 3: 'LAB998801^UHMCLAB', 4: '58410-2^CBC panel - Blood by Automated count^LN',
                7: '20260315084500-0500', 16: '1001^Welby^Marcus^A^^Dr^MD', 22: '20260315101200-0500',
                24: 'HM', 25: 'F'}),
    r'NTE|1|L|Specimen slightly hemolyzed; interpret K+ with caution.',
    r'OBX|1|NM|6690-2^Leukocytes [#/volume] in Blood by Automated count^LN||13.8|10*3/uL^thousand per microliter^UCUM|4.0-11.0|H|||F|||20260315084500-0500||||||20260315100000-0500',
    r'OBX|2|NM|718-7^Hemoglobin [Mass/volume] in Blood^LN||9.1|g/dL^gram per deciliter^UCUM|12.0-16.0|L|||F|||20260315084500-0500',
    r'NTE|1|L|Hgb decreased from prior (10.4 on 20260301).',
    r'OBX|3|NM|777-3^Platelets [#/volume] in Blood by Automated count^LN||38|10*3/uL^^UCUM|150-400|LL|||F',
    r'NTE|1|L|Critical value called to RN J. Smith at 1010 and read back.',
    r'OBX|4|NM|4544-3^Hematocrit [Volume Fraction] of Blood by Automated count^LN||27.5|%^percent^UCUM|36-46|L|||F',
    r'ORC|RE|ORD448802^EPIC|LAB998802^UHMCLAB||CM',
    seg('OBR', {1: '2', 2: 'ORD448802^EPIC', 3: 'LAB998802^UHMCLAB', 4: '51990-0^Basic metabolic panel - Blood^LN',
                7: '20260315084500-0500', 22: '20260315101400-0500', 24: 'CH', 25: 'F'}),
    r'OBX|1|NM|2951-2^Sodium [Moles/volume] in Serum or Plasma^LN||138|mmol/L^^UCUM|136-145|N|||F',
    r'OBX|2|NM|2823-3^Potassium [Moles/volume] in Serum or Plasma^LN||5.9|mmol/L^^UCUM|3.5-5.1|H|||F',
    r'OBX|3|NM|2345-7^Glucose [Mass/volume] in Serum or Plasma^LN||-1.5|mmol/L^^UCUM|>0|A|||C',
    r'OBX|4|NM|2160-0^Creatinine [Mass/volume] in Serum or Plasma^LN||1.02|mg/dL^^UCUM|0.57-1.00|H|||F',
], 'Two ORDER_OBSERVATION groups (CBC, BMP): NM with UCUM units, ranges, H/L/LL/A flags, corrected (C) '
   'status, negative NM, NTE after OBR and after OBX')

# --- Cerner ORU: SN variants, ST, CWE, DT, TS --------------------------------
add('cerner', 'ORU', 'R01', [
    msh('PATHNET', 'CMC LAB', '20260316081500-0500', 'ORU^R01^ORU_R01', 'Q1987654321T101', '2.5.1'),
    seg('PID', {1: '1', 3: r'7700123^^^CMC^MR~999-44-1122^^^SSA^SS', 5: r'Garcia\T\Lopez^Maria^Elena',
                7: '19650923', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'LABDRAW^^^CMC', 19: '88001299^^^CMC^VN'}),
    seg('OBR', {1: '1', 2: 'CP7781^HNAM', 3: 'CL7781^PATHNET', 4: 'MISC^Miscellaneous chemistry/serology^L',
                7: '20260316070000-0500', 25: 'F'}),
    r'OBX|1|SN|1988-5^C reactive protein [Mass/volume] in Serum or Plasma^LN||>^10|mg/L^^UCUM|<5|H|||F',
    r'OBX|2|SN|14957-5^Microalbumin [Mass/volume] in Urine^LN||<^5|mg/L^^UCUM|<30|N|||F',
    r'OBX|3|SN|2857-1^Prostate specific Ag [Mass/volume] in Serum or Plasma^LN||^10^-^20|ng/mL^^UCUM|0-4|H|||F',
    r'OBX|4|SN|5370-0^Rubella virus IgG Ab [Titer] in Serum^LN||^1^:^128|{titer}^^UCUM|<1:8|A|||F',
    r'OBX|5|ST|5778-6^Color of Urine^LN||Straw, slightly cloudy||||||F',
    r'OBX|6|CWE|882-1^ABO and Rh group [Type] in Blood^LN||278149003^Blood group A Rh(D) positive^SCT||||||F',
    r'OBX|7|DT|21112-8^Birth date^LN||19650923||||||F',
    r'OBX|8|TS|68963-8^Specimen collection date and time^LN||20260316070000-0500||||||F',
], "SN variants: '>^10', '<^5', '^10^-^20' (range), '^1^:^128' (ratio); ST, CWE (SNOMED), DT, TS values")

# --- Meditech ORU: TX repeating OBX-5, FT with every escape ------------------
add('meditech', 'ORU', 'R01', [
    msh('MEDITECH', 'MTHOSP', '20260317150000', 'ORU^R01', 'MT.20260317.000201', '2.4'),
    seg('PID', {1: '1', 3: 'M000457^^^MTHOSP^MR', 5: 'Belanger^Renee^Andree', 7: '19590101', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'I', 3: 'TEL^301^2^MTHOSP', 19: 'MTV0000457^^^MTHOSP^VN'}),
    seg('OBR', {1: '1', 2: 'MT-ORD-5501', 3: 'MT-RAD-5501', 4: '36643-5^XR Chest 2 Views^LN',
                7: '20260317130000', 25: 'F', 32: '7101&Roentgen&Wilhelm'}),
    r'OBX|1|TX|36643-5&IMP^XR Chest 2 Views Impression^LN||Right lower lobe opacity.~Small right pleural effusion.~No pneumothorax.||||||F',
    r'OBX|2|FT|36643-5&FIND^XR Chest 2 Views Findings^LN||\H\FINDINGS:\N\\.br\Heart size normal \T\ mediastinum unremarkable.\.br\Ratio CTR 0.45\S\1 \F\ prior 0.44.\.br\Lines \R\ tubes: none. Path C:\E\rad\E\img\X0D0A\End.||||||F',
    r'NTE|1|L|Compare with prior \E\\E\ PACS study 2026-03-10.',
], 'Radiology: TX with repeating OBX-5 (3 lines, one Observation); FT with \\H\\ \\N\\ \\.br\\ \\T\\ \\S\\ '
   '\\F\\ \\R\\ \\E\\ \\X0D0A\\; OBR-32 with sub-components; NTE after OBX; v2.4 no MSH-9.3')

# --- Athena ORU: ED base64 PDF, NTE after OBR -------------------------------
add('athena', 'ORU', 'R01', [
    msh('ATHENANET', 'ATHENA_CLINIC_8821', '20260318110000-0500', 'ORU^R01^ORU_R01', 'ATH-5d2c9e1a-0101', '2.5.1'),
    seg('PID', {1: '1', 3: '8821-44501^^^ATHENA^MR', 5: 'Patel^Arjun^K', 7: '19910704', 8: 'M'}),
    r'ORC|RE|ATHORD-2001|EXTLAB-2001||CM',
    seg('OBR', {1: '1', 2: 'ATHORD-2001', 3: 'EXTLAB-2001', 4: '11502-2^Laboratory report^LN',
                7: '20260317090000-0500', 25: 'F'}),
    r'NTE|1|L|Full report from reference lab attached as PDF.',
    r'NTE|2|L|Second comment line for the same OBR.',
    'OBX|1|ED|11502-2^Laboratory report^LN||EXTLAB^application^pdf^Base64^' + _PDF_B64 + '||||||F',
    r'OBX|2|ST|8251-1^Service comment^LN||See attached report||||||F',
], 'ED value (application/pdf, Base64) in OBX-5; two NTE after OBR; no PV1')

# --- OpenEMR ORU: micro with SPM + OBX after SPM, two ORDER_OBSERVATION ------
add('openemr', 'ORU', 'R01', [
    msh('OPENEMR', 'Greenfield Clinic', '20260319160000-0600', 'ORU^R01^ORU_R01', 'OEMR-000201', '2.5.1'),
    seg('PID', {1: '1', 3: '1043^^^OPENEMR^MR', 5: 'Munoz^Zoe^Ines', 7: '20010214', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'CLINIC1^^^Greenfield Clinic', 19: 'OEV-1043-3^^^OPENEMR^VN'}),
    r'ORC|RE|OE-7001|QL-7001||CM',
    seg('OBR', {1: '1', 2: 'OE-7001', 3: 'QL-7001', 4: '630-4^Bacteria identified in Urine by Culture^LN',
                7: '20260317100000-0600', 25: 'F'}),
    r'OBX|1|CWE|630-4^Bacteria identified in Urine by Culture^LN|1|112283007^Escherichia coli^SCT||||||F',
    r'OBX|2|SN|564-5^Colony count [#/volume] in Urine by Culture^LN|1|>^100000|{CFU}/mL^^UCUM||A|||F',
    r'NTE|1|L|Susceptibility to follow.',
    r'SPM|1|SP-7001&QL||122575003^Urine specimen^SCT|||||||||||||20260317100000-0600|20260317113000-0600',
    r'OBX|1|NM|19153-6^Volume of Urine^LN||35|mL^^UCUM|||||F',
    r'OBX|2|CWE|33882-2^Collection method^LN||73416001^Clean catch^SCT||||||F',
    r'ORC|RE|OE-7002|QL-7002||CM',
    seg('OBR', {1: '2', 2: 'OE-7002', 3: 'QL-7002', 4: '5804-0^Protein [Mass/volume] in Urine by Test strip^LN',
                7: '20260317100000-0600', 25: 'F'}),
    r'OBX|1|SN|5804-0^Protein [Mass/volume] in Urine by Test strip^LN||<^30|mg/dL^^UCUM|<30|N|||F',
], 'Micro culture: OBX-4 sub-IDs, SPM with collection/received times and two OBX after SPM; '
   'second ORDER_OBSERVATION; Specimen not asserted (OBR also maps to Specimen)')

# --- Epic ORU: two PATIENT_RESULT groups ------------------------------------
add('epic', 'ORU', 'R01', [
    msh('EPIC', 'UHMC POC', '20260320070000-0500', 'ORU^R01^ORU_R01', 'EPC2026032007000102', '2.5.1'),
    seg('PID', {1: '1', 3: r'E1000077^^^UHMC^MR~900100077^^^EMPI^PI', 5: 'Brooks^Terrence^L',
                7: '19830311', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'I', 3: '5E^510^B^UHMC', 19: 'V2026032100077^^^UHMC^VN'}),
    seg('OBR', {1: '1', 3: 'POC-10001^UHMCPOC', 4: '41653-7^Glucose [Mass/volume] in Capillary blood by Glucometer^LN',
                7: '20260320065500-0500', 25: 'F'}),
    r'OBX|1|NM|41653-7^Glucose [Mass/volume] in Capillary blood by Glucometer^LN||212|mg/dL^^UCUM|70-99|H|||F|||20260320065500-0500||||||||POC Meter 12^^UHMC',
    seg('PID', {1: '2', 3: r'E1000123^^^UHMC^MR~900100123^^^EMPI^PI', 5: 'Nguyen^Lan', 7: '19850217', 8: 'F'}),
    seg('OBR', {1: '1', 3: 'POC-10002^UHMCPOC', 4: '41653-7^Glucose [Mass/volume] in Capillary blood by Glucometer^LN',
                7: '20260320065800-0500', 25: 'F'}),
    r'OBX|1|NM|41653-7^Glucose [Mass/volume] in Capillary blood by Glucometer^LN||88|mg/dL^^UCUM|70-99|N|||F|||20260320065800-0500',
], 'Two PATIENT_RESULT groups (two PIDs; first with PV1, second without) -> 2 Patients, 2 DiagnosticReports')

# --- Cerner ORU: v2.3 newborn, PID-7 with time of birth, no MSH-9.3 ---------
add('cerner', 'ORU', 'R01', [
    msh('PATHNET', 'CMC LAB', '202603151230', 'ORU^R01', 'Q1987654321T102', '2.3', ack=False),
    seg('PID', {1: '1', 3: '7702001^^^CMC^MR', 5: 'Baby Girl^Ivanova', 7: '202603140342', 8: 'F',
                24: 'N'}),
    seg('NK1', {1: '1', 2: 'Ivanova^Katya', 3: 'MTH^Mother^HL70063'}),
    seg('PV1', {1: '1', 2: 'I', 3: 'NBN^B12^^CMC', 19: '88002001^^^CMC^VN'}),
    seg('OBR', {1: '1', 2: 'CP9001', 3: 'CL9001', 4: '58941-6^Bilirubin.total [Mass/volume] in Blood^LN',
                7: '202603151100', 25: 'F'}),
    r'OBX|1|NM|58941-6^Bilirubin.total [Mass/volume] in Blood^LN||11.2|mg/dL|<12.0||||F|||202603151100',
    r'OBX|2|NM|8339-4^Birth weight Measured^LN||3.41|kg|||||F',
], 'v2.3 newborn result: PID-7 with time of birth (YYYYMMDDHHMM), NK1 mother, units without coding system, '
   'no MSH-9.3, timestamps without offsets')

# --- Meditech ORU: v2.6, +0530 offset, DT with YYYYMM / YYYY precision -------
add('meditech', 'ORU', 'R01', [
    msh('MEDITECH', 'MT_EXPANSE_BLR', '20260321143000+0530', 'ORU^R01^ORU_R01', 'MT.20260321.000203', '2.6'),
    seg('PID', {1: '1', 3: r'MB00091^^^MT_EXPANSE_BLR^MR~IN-4411-9921^^^ABHA^PI', 5: 'Rao^Meera',
                7: '19700815', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'OPD^^^MT_EXPANSE_BLR'}),
    seg('OBR', {1: '1', 2: 'MB-ORD-77', 3: 'MB-LAB-77', 4: '11369-6^History of immunization^LN',
                7: '20260321120000+0530', 25: 'F'}),
    r'OBX|1|DT|30952-2^Date of last tetanus vaccine^LN||201907||||||F|||20260321120000+0530',
    r'OBX|2|DT|11778-8^Delivery date estimated^LN||2026||||||F',
    r'OBX|3|TS|8665-2^Last menstrual period start date^LN||20251112||||||F',
    r'OBX|4|CWE|11368-8^Illness or injury onset date and time^LN||U^Unknown^NULLFL||||||F',
    r'OBX|5|NM|39156-5^Body mass index^LN||24.8|kg/m2^^UCUM|18.5-24.9|H|||F|||20260321121500.5+0530',
], 'v2.6 with +0530 offsets; DT values at YYYYMM and YYYY precision, TS at day precision, CWE NULLFL, '
   'fractional-second OBX-14')

# --- Athena ORU: v2.8 radiology, one TX OBX per line ------------------------
add('athena', 'ORU', 'R01', [
    msh('ATHENANET', 'ATHENA_IMAGING_77', '20260322091500-0500', 'ORU^R01^ORU_R01', 'ATH-5d2c9e1a-0102', '2.8'),
    seg('PID', {1: '1', 3: r'8821-47777^^^ATHENA^MR~A7700777^^^ATHENA_EMPI^PI', 5: 'Lindqvist^Astrid',
                7: '19990909', 8: 'F'}),
    r'ORC|RE|ATHORD-3001|RIS-3001||CM||||20260322080000-0500',
    seg('OBR', {1: '1', 2: 'ATHORD-3001', 3: 'RIS-3001', 4: '24627-2^CT Chest^LN',
                7: '20260322080000-0500', 22: '20260322091000-0500', 24: 'RAD', 25: 'F'}),
    r'NTE|1|L|Contrast: none.',
    r'OBX|1|TX|24627-2^CT Chest^LN|1|EXAM: CT chest without contrast.||||||F',
    r'OBX|2|TX|24627-2^CT Chest^LN|2|FINDINGS: 4 mm nodule RUL (series 3, image 41).||||||F',
    r'OBX|3|TX|24627-2^CT Chest^LN|3|IMPRESSION: Indeterminate 4 mm nodule; follow-up in 12 months.||||||F',
    'OBX|4|ED|24627-2^CT Chest^LN|4|RIS^image^png^Base64^' + _PNG_B64 + '||||||F',
], 'v2.8 radiology: one TX OBX per report line (OBX-4 sub-IDs), ED image/png base64, ORC+OBR+NTE, no PV1')

# --- OpenEMR ORU: v2.3.1 vitals with NTE, SN ratio ---------------------------
add('openemr', 'ORU', 'R01', [
    msh('OPENEMR', 'Greenfield Clinic', '20260323093000', 'ORU^R01', 'OEMR-000202', '2.3.1'),
    seg('PID', {1: '1', 3: '1055^^^OPENEMR^MR', 5: 'Kowalski^Piotr', 7: '196803', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'CLINIC2^^^Greenfield Clinic'}),
    seg('OBR', {1: '1', 2: 'OE-8001', 4: '85353-1^Vital signs panel^LN', 7: '20260323091500', 25: 'F'}),
    r'OBX|1|NM|8480-6^Systolic blood pressure^LN||152|mm[Hg]^^UCUM|90-120|H|||F',
    r'OBX|2|NM|8462-4^Diastolic blood pressure^LN||94|mm[Hg]^^UCUM|60-80|H|||F',
    r'NTE|1|L|Repeat BP 148\S\92 after 5 min rest.',
    r'OBX|3|SN|8478-0^Mean blood pressure^LN||=^113|mm[Hg]^^UCUM|||||F',
    r'OBX|4|NM|8867-4^Heart rate^LN||72|/min^^UCUM|60-100|N|||F',
], "v2.3.1 vitals: NM with UCUM mm[Hg], SN with '=' comparator, NTE after OBX with \\S\\ escape, no MSH-9.3")

# ==========================================================================
# GROUP 4: ORM^O01 and OML^O21
# ==========================================================================

# --- Epic ORM NW, v2.3 -------------------------------------------------------
add('epic', 'ORM', 'O01', [
    msh('EPIC', 'UHMC', '20260315090000-0500', 'ORM^O01', 'EPC2026031509000201', '2.3', rapp='RIS', rfac='UHMC RAD'),
    seg('PID', {1: '1', 3: 'E1000001^^^UHMC^MR', 5: 'Carter^Evelyn^Rose', 7: '19780412', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'I', 3: '4W^401^A^UHMC', 19: 'V2026031500001^^^UHMC^VN'}),
    r'ORC|NW|ORD448810^EPIC||GRP448810^EPIC|SC||1^^^20260315093000-0500^^S||20260315090000-0500|JSMITH^Smith^Jane||1001^Welby^Marcus^A^^Dr^MD',
    seg('OBR', {1: '1', 2: 'ORD448810^EPIC', 4: '71046^XR CHEST 2 VIEWS^CPT', 5: 'S',
                16: '1001^Welby^Marcus^A^^Dr^MD', 27: '1^^^20260315093000-0500^^S', 31: 'R07.9^Chest pain^I10'}),
    r'NTE|1|P|Portable if patient cannot travel.',
    r'DG1|1|I10|R07.9^Chest pain, unspecified^I10',
], 'New order (ORC-1 NW) v2.3: ORC/OBR with TQ (ORC-7/OBR-27), OBR-31 reason, NTE, DG1; no MSH-9.3')

# --- Cerner ORM CA, v2.4 -----------------------------------------------------
add('cerner', 'ORM', 'O01', [
    msh('HNAM', 'CMC', '20260316103000-0500', 'ORM^O01^ORM_O01', 'Q1987654321T201', '2.4'),
    seg('PID', {1: '1', 3: '7700123^^^CMC^MR', 5: r'Garcia\T\Lopez^Maria^Elena', 7: '19650923', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'LABDRAW^^^CMC', 19: '88001299^^^CMC^VN'}),
    r'ORC|CA|CP7790^HNAM|CL7790^PATHNET||CA||||20260316103000-0500|||3110^Osler^William^^^Dr||||DUP^Duplicate order^L',
    seg('OBR', {1: '1', 2: 'CP7790^HNAM', 3: 'CL7790^PATHNET', 4: '24331-1^Lipid panel - Serum or Plasma^LN',
                16: '3110^Osler^William^^^Dr'}),
    r'NTE|1|L|Cancelled: duplicate of CP7781.',
], 'Cancel order (ORC-1 CA, ORC-5 CA, ORC-16 reason) with OBR and NTE; MSH-9.3 present')

# --- Athena ORM NW, two orders, IN1, AL1, DG1 x2, v2.5.1 ----------------------
add('athena', 'ORM', 'O01', [
    msh('ATHENANET', 'ATHENA_CLINIC_1207', '20260317141500-0500', 'ORM^O01^ORM_O01', 'ATH-5d2c9e1a-0201', '2.5.1',
        rapp='QUESTLAB', rfac='QLAB-EAST'),
    seg('PID', {1: '1', 3: r'1207-300^^^ATHENA^MR~A7712070^^^ATHENA_EMPI^PI', 5: "O'Brien^Siobhan",
                7: '19770101', 8: 'F', 11: '1 Main St^^Boston^MA^02101'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'PEDS^^^ATHENA_CLINIC_1207'}),
    seg('IN1', {1: '1', 2: 'PPO', 3: 'HPHC1', 4: 'Harbor Health Plan (FAKE)', 17: 'SEL^Self^HL70063',
                36: 'HHP-4400112'}),
    r'AL1|1|DA|7980^Penicillin^RXNORM|SV|Anaphylaxis',
    r'ORC|NW|ATH-L-9001||ATH-G-9000|||||20260317141500-0500|||8801^Kildare^James^^^Dr^MD^^^^^^NPI',
    seg('OBR', {1: '1', 2: 'ATH-L-9001', 4: '4548-4^Hemoglobin A1c/Hemoglobin.total in Blood^LN',
                7: '20260317141500-0500', 16: '8801^Kildare^James^^^Dr^MD'}),
    r'NTE|1|L|Fasting not required.',
    r'DG1|1|I10|E11.9^Type 2 diabetes mellitus without complications^I10',
    r'ORC|NW|ATH-L-9002||ATH-G-9000|||||20260317141500-0500|||8801^Kildare^James^^^Dr^MD^^^^^^NPI',
    seg('OBR', {1: '2', 2: 'ATH-L-9002', 4: '2093-3^Cholesterol [Mass/volume] in Serum or Plasma^LN',
                7: '20260317141500-0500', 16: '8801^Kildare^James^^^Dr^MD'}),
    r'DG1|1|I10|E78.5^Hyperlipidemia, unspecified^I10',
], 'New lab order with two ORDER groups sharing ORC-4 placer group; IN1, AL1; DG1 in each ORDER_DETAIL')

# --- Meditech ORM NW with AOE OBX, v2.3.1 ------------------------------------
add('meditech', 'ORM', 'O01', [
    msh('MEDITECH', 'MTHOSP', '20260318074500', 'ORM^O01', 'MT.20260318.000301', '2.3.1'),
    seg('PID', {1: '1', 3: 'M000812^^^MTHOSP^MR', 5: 'Okafor^Chidi^N', 7: '19720530', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'P', 3: 'SDS^^^MTHOSP', 19: 'MTV0000812^^^MTHOSP^VN'}),
    r'ORC|NW|MT-ORD-6601||||||||||7002^Lister^Joseph^^^Dr',
    seg('OBR', {1: '1', 2: 'MT-ORD-6601', 4: '73562^XR KNEE 3 VIEWS^CPT', 16: '7002^Lister^Joseph^^^Dr'}),
    r'NTE|1|L|Pre-op films \.br\ weight-bearing views please.',
    r'DG1|1|I10|M17.11^Unilateral primary osteoarthritis, right knee^I10',
    r'OBX|1|CWE|PREG^Pregnancy status^L||N^No^HL70136||||||F',
    r'OBX|2|NM|29463-7^Body weight^LN||104|kg^^UCUM|||||F',
], 'New order with ask-at-order-entry OBX (CWE, NM) in ORDER_DETAIL, DG1, NTE with \\.br\\')

# --- Epic OML NW with TQ1, SPM, SAC, DG1, NTE, v2.5.1 -------------------------
add('epic', 'OML', 'O21', [
    msh('EPIC', 'UHMC', '20260319081000-0500', 'OML^O21^OML_O21', 'EPC2026031908100301', '2.5.1',
        rapp='BEAKER', rfac='UHMC LAB'),
    seg('PID', {1: '1', 3: r'E1000077^^^UHMC^MR~900100077^^^EMPI^PI', 5: 'Brooks^Terrence^L',
                7: '19830311', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'I', 3: '5E^510^B^UHMC', 19: 'V2026032100077^^^UHMC^VN'}),
    seg('IN1', {1: '1', 2: 'HMO', 3: 'UHP01', 4: 'United Health Plan (FAKE)', 36: 'UHP-771100'}),
    r'ORC|NW|ORD448820^EPIC|||||||20260319081000-0500|||1003^Grey^Meredith^^^Dr^MD',
    r'TQ1|1||||||20260319083000-0500||S^Stat^HL70485',
    seg('OBR', {1: '1', 2: 'ORD448820^EPIC', 4: '10839-9^Troponin I.cardiac [Mass/volume] in Serum or Plasma^LN',
                7: '20260319083000-0500', 16: '1003^Grey^Meredith^^^Dr^MD'}),
    r'NTE|1|L|Serial troponin #2 of 3.',
    r'DG1|1||I21.4^Non-ST elevation myocardial infarction^I10',
    r'SPM|1|SP448820&EPIC||119364003^Serum specimen^SCT|||||||||||||20260319083000-0500',
    seg('SAC', {3: 'CT448820-1^EPIC', 6: 'SER^Serum^HL70070', 21: '5', 22: 'mL&milliliter&UCUM'}),
], 'Lab order NW: IN1, ORC/TQ1/OBR/NTE/DG1, SPM + SAC container (Specimen not asserted)')

# --- Meditech OML CA, v2.6 ---------------------------------------------------
add('meditech', 'OML', 'O21', [
    msh('MEDITECH', 'MT_EXPANSE', '20260320110000', 'OML^O21^OML_O21', 'MT.20260320.000302', '2.6'),
    seg('PID', {1: '1', 3: 'M000457^^^MTHOSP^MR', 5: 'Belanger^Renee', 7: '19590101', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'I', 3: 'TEL^301^2^MTHOSP', 19: 'MTV0000457^^^MTHOSP^VN'}),
    r'ORC|CA|MT-LAB-7701|MT-LIS-7701||CA||||20260320110000|||7001^Lefevre^Gerard^^^Dr',
    seg('OBR', {1: '1', 2: 'MT-LAB-7701', 3: 'MT-LIS-7701', 4: '600-7^Bacteria identified in Blood by Culture^LN'}),
    r'NTE|1|L|Cancelled per physician; culture drawn in ED.',
    r'SPM|1|MT-SP-7701&MT_EXPANSE||119297000^Blood specimen^SCT',
], 'Lab order cancel (ORC-1 CA), v2.6, SPM')

# --- Cerner OML, two orders with SPM/SAC each, AOE OBX, NK1, v2.7 ------------
add('cerner', 'OML', 'O21', [
    msh('HNAM', 'CMC', '20260321091500-0500', 'OML^O21^OML_O21', 'Q1987654321T301', '2.7', rapp='PATHNET'),
    seg('PID', {1: '1', 3: r'7701500^^^CMC^MR~U9901500^^^CMC_EMPI^PI', 5: 'Ivanova^Katya', 7: '20040315', 8: 'F'}),
    seg('NK1', {1: '1', 2: 'Ivanov^Pavel', 3: 'FTH^Father^HL70063', 5: '^PRN^PH^^1^207^5550144'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'OBCLIN^^^CMC', 19: '88003001^^^CMC^VN'}),
    r'ORC|NW|CP8801^HNAM||CG8800^HNAM|||||20260321091500-0500',
    seg('OBR', {1: '1', 2: 'CP8801^HNAM', 4: '57021-8^CBC W Auto Differential panel - Blood^LN',
                7: '20260321093000-0500'}),
    r'OBX|1|CWE|11449-6^Pregnancy status^LN||77386006^Pregnant^SCT||||||F',
    r'SPM|1|CS8801&HNAM||119297000^Blood specimen^SCT|||||||||||||20260321093000-0500',
    seg('SAC', {3: 'CT8801^HNAM', 6: 'LAV^Lavender top^L'}),
    r'ORC|NW|CP8802^HNAM||CG8800^HNAM|||||20260321091500-0500',
    seg('OBR', {1: '2', 2: 'CP8802^HNAM', 4: '1558-6^Fasting glucose [Mass/volume] in Serum or Plasma^LN',
                7: '20260321093000-0500'}),
    r'DG1|1||Z34.90^Encounter for supervision of normal pregnancy, unspecified^I10',
    r'SPM|1|CS8802&HNAM||119364003^Serum specimen^SCT|||||||||||||20260321093000-0500',
    seg('SAC', {3: 'CT8802^HNAM', 6: 'GLD^Gold top^L'}),
], 'v2.7 OML with two ORDER groups, each OBR + SPM + SAC; AOE OBX; DG1 in 2nd order; NK1')

# --- OpenEMR OML NW with escapes in NTE, v2.5.1 -----------------------------
add('openemr', 'OML', 'O21', [
    msh('OPENEMR', 'Greenfield Clinic', '20260322101500-0600', 'OML^O21', 'OEMR-000301', '2.5.1'),
    seg('PID', {1: '1', 3: '1077^^^OPENEMR^MR', 5: 'Reyes^Camila', 7: '20150930', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'PEDS^^^Greenfield Clinic'}),
    r'ORC|NW|OE-9101|||||||20260322101500-0600',
    seg('OBR', {1: '1', 2: 'OE-9101', 4: '6206-7^Peanut IgE Ab [Units/volume] in Serum^LN'}),
    r'NTE|1|L|Parent reports reaction \T\ hives after peanut butter \F\ see allergy list.\X0D\Second line.',
    r'SPM|1|OE-SP-9101&OPENEMR||119364003^Serum specimen^SCT',
], 'OML NW without MSH-9.3; NTE with \\T\\ \\F\\ \\X0D\\ escapes; SPM')

# ==========================================================================
# GROUP 5: SIU (S12, S13, S14, S15, S26)
# ==========================================================================

# --- Epic S12: full resource set with NTEs ----------------------------------
add('epic', 'SIU', 'S12', [
    msh('EPIC', 'UHMC AMB', '20260324090000-0500', 'SIU^S12^SIU_S12', 'EPC2026032409000401', '2.5.1',
        rapp='SCHEDGW'),
    seg('SCH', {1: '55001^EPIC', 2: '77001^EPICCADENCE', 5: 'CARDIO^Cardiology clinic',
                6: 'NEW^New appointment^HL70276', 7: 'FU^Follow-up^HL70276', 8: 'FOLLOWUP^Follow up^HL70277',
                9: '30', 10: 'min^minutes^UCUM',
                11: '^^30^20260407140000-0500^20260407143000-0500',
                16: '1003^Grey^Meredith^^^Dr^MD', 20: 'SCHED01^Scheduler^Sam',
                25: 'Booked^Booked^HL70278'}),
    r'NTE|1|L|Bring current medication list.',
    seg('PID', {1: '1', 3: r'E1000077^^^UHMC^MR~900100077^^^EMPI^PI', 5: 'Brooks^Terrence^L',
                7: '19830311', 8: 'M', 13: '^PRN^PH^^1^312^5550121'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'CARDCL^^^UHMC', 19: 'V2026040700077^^^UHMC^VN'}),
    r'DG1|1||I21.4^Non-ST elevation myocardial infarction^I10',
    r'RGS|1|A|RG1',
    r'AIS|1|A|93000^ECG 12-lead^CPT|20260407140000-0500|0|min|30|min||Booked',
    r'NTE|1|L|ECG before visit.',
    r'AIG|1|A|ECGCART3^ECG cart 3|EQUIP^Equipment^L||||20260407140000-0500|0|min|30|min',
    r'AIL|1|A|CARDCL^EXAM4^^UHMC|EXAM^Exam room^L||20260407140000-0500|0|min|30|min||Booked',
    r'AIP|1|A|1003^Grey^Meredith^^^Dr^MD|ATND^Attending^L||20260407140000-0500|0|min|30|min||Booked',
    r'NTE|1|L|Dr. Grey running 10 min late on Tuesdays.',
], 'New booking: SCH with TQ SCH-11, NTE after SCH/AIS/AIP, PID, PV1, DG1, RGS, AIS, AIG, AIL, AIP')

# --- Athena S12: v2.3.1, no MSH-9.3 -----------------------------------------
add('athena', 'SIU', 'S12', [
    msh('ATHENANET', 'ATHENA_CLINIC_1207', '20260325103000', 'SIU^S12', 'ATH-5d2c9e1a-0401', '2.3.1'),
    seg('SCH', {1: '3340017', 2: '3340017', 6: 'NEW', 7: 'WELL^Well child visit',
                8: 'PEDSWELL^Well child 15 min', 9: '15', 10: 'MIN',
                11: '^^15^202604011000^202604011015', 25: 'Booked'}),
    seg('PID', {1: '1', 3: '1207-301^^^ATHENA^MR', 5: "O'Brien^Aoife", 7: '20200606', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'PEDS^^^ATHENA_CLINIC_1207', 7: '8801^Kildare^James^^^Dr'}),
    r'RGS|1',
    r'AIL|1||PEDS^^^ATHENA_CLINIC_1207||||202604011000|||15|MIN',
    r'AIP|1||8801^Kildare^James^^^Dr|D^Doctor||202604011000|||15|MIN',
], 'v2.3.1 booking without MSH-9.3, local timestamps without offsets, minimal RGS/AIL/AIP')

# --- OpenEMR S12: UTF-8 ------------------------------------------------------
add('openemr', 'SIU', 'S12', [
    msh('OPENEMR', 'Greenfield Clinic', '20260325111500-0600', 'SIU^S12^SIU_S12', 'OEMR-000401', '2.5.1',
        charset='UNICODE UTF-8'),
    seg('SCH', {1: 'OE-APPT-501', 2: 'OE-APPT-501', 7: 'CONSULT^Consulta de seguimiento^L',
                9: '20', 10: 'min', 11: '^^20^20260402091500-0600^20260402093500-0600', 25: 'Booked'}),
    r'NTE|1|L|Paciente prefiere intérprete en español; llamar a José Muñoz.',
    seg('PID', {1: '1', 3: '1043^^^OPENEMR^MR', 5: 'Muñoz^Zoë^Inés', 7: '20010214', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'CLINIC1^^^Greenfield Clinic'}),
    r'RGS|1|A',
    r'AIP|1|A|3301^Ortíz^Álvaro^^^Dr|ATND||20260402091500-0600|||20|min',
], 'UTF-8 booking (MSH-18 UNICODE UTF-8) with non-ASCII in NTE, PID-5, AIP-3')

# --- Cerner S13: reschedule ---------------------------------------------------
add('cerner', 'SIU', 'S13', [
    msh('HNAM', 'CMC', '20260326081500-0500', 'SIU^S13^SIU_S12', 'Q1987654321T401', '2.4', rapp='SCHEDGW'),
    seg('SCH', {1: 'CS-55120', 2: 'CS-55120', 6: 'RES^Rescheduled by patient^L', 7: 'POSTOP^Post-op check',
                9: '20', 10: 'MIN', 11: '^^20^20260410093000-0500^20260410095000-0500', 25: 'Booked'}),
    seg('PID', {1: '1', 3: '7700123^^^CMC^MR', 5: r'Garcia\T\Lopez^Maria^Elena', 7: '19650923', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'SURGCL^^^CMC'}),
    r'RGS|1|U',
    r'AIS|1|U|99024^Postoperative follow-up visit^CPT|20260410093000-0500|||20|MIN',
    r'AIP|1|U|3110^Osler^William^^^Dr|SURG||20260410093000-0500|||20|MIN',
], 'Reschedule (S13): SCH-6 reason, new times in SCH-11/AIS-4/AIP-6, segment action code U')

# --- Meditech S14: modification ------------------------------------------------
add('meditech', 'SIU', 'S14', [
    msh('MEDITECH', 'MTCLINIC', '20260327134500', 'SIU^S14^SIU_S12', 'MT.20260327.000401', '2.5'),
    seg('SCH', {1: 'MT-AP-8812', 2: 'MT-AP-8812', 7: 'PREOP^Pre-operative evaluation', 9: '45', 10: 'min',
                11: '^^45^20260323090000^20260323094500', 25: 'Booked'}),
    r'NTE|1|L|Changed room; interpreter \E\ wheelchair requested.',
    seg('PID', {1: '1', 3: 'M000812^^^MTHOSP^MR', 5: 'Okafor^Chidi^N', 7: '19720530', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'PREOP^^^MTCLINIC'}),
    r'RGS|1|U',
    r'AIL|1|U|PREOP^RM2^^MTCLINIC|EXAM||20260323090000|||45|min',
    r'AIG|1|A|WHEELCHAIR01^Wheelchair|EQUIP||||20260323090000|||45|min',
], 'Modification (S14): AIL room change, AIG added, \\E\\ escape in NTE, timestamps without offsets')

# --- Athena S15: cancel -------------------------------------------------------
add('athena', 'SIU', 'S15', [
    msh('ATHENANET', 'ATHENA_CLINIC_8821', '20260328160000-0500', 'SIU^S15^SIU_S12', 'ATH-5d2c9e1a-0402', '2.5.1'),
    seg('SCH', {1: '3350099', 2: '3350099', 6: 'PATCAN^Patient cancelled^L', 7: 'FOLLOWUP',
                9: '15', 10: 'min', 11: '^^15^20260405100000-0500^20260405101500-0500',
                25: 'Cancelled^Cancelled^HL70278'}),
    seg('PID', {1: '1', 3: '8821-44501^^^ATHENA^MR', 5: 'Patel^Arjun^K', 7: '19910704', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'IM^^^ATHENA_CLINIC_8821'}),
    r'RGS|1|D',
    r'AIP|1|D|5150^House^Gregory^^^Dr^MD|ATND||20260405100000-0500|||15|min||Cancelled',
], 'Cancel (S15): SCH-25 Cancelled, action code D')

# --- Epic S26: no-show ----------------------------------------------------------
add('epic', 'SIU', 'S26', [
    msh('EPIC', 'UHMC AMB', '20260407150500-0500', 'SIU^S26^SIU_S12', 'EPC2026040715050402', '2.6', rapp='SCHEDGW'),
    seg('SCH', {1: '55002^EPIC', 2: '77002^EPICCADENCE', 6: 'NOSHOW^Patient did not arrive^L',
                7: 'FU^Follow-up', 9: '30', 10: 'min', 11: '^^30^20260407140000-0500^20260407143000-0500',
                25: 'Noshow^No-show^HL70278'}),
    seg('PID', {1: '1', 3: r'E1000123^^^UHMC^MR~900100123^^^EMPI^PI', 5: 'Nguyen^Lan', 7: '19850217', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'FM^^^UHMC'}),
    r'RGS|1',
    r'AIL|1||FM^EXAM2^^UHMC||||20260407140000-0500|||30|min||Noshow',
], 'No-show (S26), v2.6, SCH-25 Noshow')

# ==========================================================================
# GROUP 5b: MDM (T02, T06, T10)
# ==========================================================================
_MDM_ATTACH_B64 = _b64.b64encode(b'%PDF-1.4\n% FAKE discharge summary attachment\n%%EOF\n').decode('ascii')

add('epic', 'MDM', 'T02', [
    msh('EPIC', 'UHMC', '20260320150000-0500', 'MDM^T02^MDM_T02', 'EPC2026032015000501', '2.5.1'),
    r'EVN|T02|20260320150000-0500',
    seg('PID', {1: '1', 3: r'E1000077^^^UHMC^MR~900100077^^^EMPI^PI', 5: 'Brooks^Terrence^L',
                7: '19830311', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'I', 3: '5E^510^B^UHMC', 19: 'V2026032100077^^^UHMC^VN'}),
    seg('TXA', {1: '1', 2: 'DS^Discharge summary^HL70270', 3: 'TX', 4: '20260320143000-0500',
                5: '1003^Grey^Meredith^^^Dr^MD', 6: '20260320140000-0500', 7: '20260320145000-0500',
                9: '1003^Grey^Meredith^^^Dr^MD', 12: 'DOC-2026-0001^EPIC', 17: 'AU', 18: 'N', 19: 'AV'}),
    r'OBX|1|TX|18842-5^Discharge summary^LN|1|DISCHARGE SUMMARY||||||F',
    r'OBX|2|TX|18842-5^Discharge summary^LN|2|Dx: NSTEMI \T\ HTN. BP 128\S\76 at discharge.||||||F',
    r'OBX|3|TX|18842-5^Discharge summary^LN|3|Meds: aspirin 81 mg daily \F\ atorvastatin 80 mg nightly.||||||F',
    r'OBX|4|TX|18842-5^Discharge summary^LN|4|Follow-up: cardiology in 2 weeks.||||||F',
], 'Original document (T02): TXA + four OBX TX lines with \\T\\ \\S\\ \\F\\ escapes')

add('cerner', 'MDM', 'T02', [
    msh('HNAM', 'CMC', '20260318120000-0500', 'MDM^T02^MDM_T02', 'Q1987654321T501', '2.5.1'),
    r'EVN|T02|20260318120000-0500',
    seg('PID', {1: '1', 3: '7700123^^^CMC^MR', 5: r'Garcia\T\Lopez^Maria^Elena', 7: '19650923', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'I', 3: '3N^312^B^CMC', 19: '88001234^^^CMC^VN'}),
    seg('TXA', {1: '1', 2: 'OP^Operative report^HL70270', 3: 'AP', 4: '20260316110000-0500',
                6: '20260316100000-0500', 9: '3110^Osler^William^^^Dr', 12: 'CDOC-55001^HNAM',
                16: 'oprpt_55001.pdf', 17: 'AU', 19: 'AV'}),
    'OBX|1|ED|11504-8^Surgical operation note^LN||HNAM^application^pdf^Base64^' + _MDM_ATTACH_B64 + '||||||F',
], 'T02 with OBX-5 ED base64 PDF attachment (TXA-3 AP, TXA-16 file name)')

add('meditech', 'MDM', 'T06', [
    msh('MEDITECH', 'MTHOSP', '20260319094500', 'MDM^T06^MDM_T02', 'MT.20260319.000501', '2.4'),
    r'EVN|T06|20260319094500',
    seg('PID', {1: '1', 3: 'M000457^^^MTHOSP^MR', 5: 'Belanger^Renee', 7: '19590101', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'I', 3: 'TEL^301^2^MTHOSP', 19: 'MTV0000457^^^MTHOSP^VN'}),
    seg('TXA', {1: '1', 2: 'PN^Progress note^HL70270', 3: 'TX', 4: '20260319093000',
                9: '7001^Lefevre^Gerard^^^Dr', 12: 'MTDOC-9001-A1', 13: 'MTDOC-9001', 17: 'AU', 19: 'AV'}),
    r'OBX|1|TX|11506-3^Progress note^LN||ADDENDUM: Culture results reviewed; continue ceftriaxone.||||||F',
    r'NTE|1|L|Addendum authored after rounds.',
], 'Addendum (T06): TXA-13 parent document, OBX TX + NTE, v2.4')

add('athena', 'MDM', 'T10', [
    msh('ATHENANET', 'ATHENA_CLINIC_8821', '20260321101000-0500', 'MDM^T10^MDM_T02', 'ATH-5d2c9e1a-0501', '2.5.1'),
    r'EVN|T10|20260321101000-0500',
    seg('PID', {1: '1', 3: '8821-44501^^^ATHENA^MR', 5: 'Patel^Arjun^K', 7: '19910704', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'IM^^^ATHENA_CLINIC_8821'}),
    seg('TXA', {1: '1', 2: 'CN^Consultation^HL70270', 3: 'FT', 4: '20260321100000-0500',
                12: 'ATHDOC-3002', 13: 'ATHDOC-3001', 17: 'AU', 19: 'AV', 21: 'Corrected laterality'}),
    r'OBX|1|FT|11488-4^Consult note^LN||\H\ASSESSMENT\N\\.br\Left (not right) knee effusion.\.br\Plan: aspirate.||||||F',
], 'Document replacement (T10): TXA-12 new / TXA-13 replaced document, TXA-21 change reason, FT with \\.br\\ \\H\\ \\N\\')

add('openemr', 'MDM', 'T02', [
    msh('OPENEMR', 'Greenfield Clinic', '20260322120000', 'MDM^T02', 'OEMR-000501', '2.3'),
    r'EVN|T02|20260322120000',
    seg('PID', {1: '1', 3: '1055^^^OPENEMR^MR', 5: 'Kowalski^Piotr', 7: '196803', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'CLINIC2^^^Greenfield Clinic'}),
    seg('TXA', {1: '1', 2: 'HP^History and physical^HL70270', 3: 'TX', 4: '20260322113000',
                12: 'OE-DOC-77', 17: 'IP', 19: 'UN'}),
    r'OBX|1|TX|34117-2^History and physical note^LN||CC: elevated BP.~HPI: 3 weeks of headaches.~ROS: negative.||||||P',
], 'v2.3 T02 without MSH-9.3: in-progress document (TXA-17 IP), single OBX with repeating TX lines')

# ==========================================================================
# GROUP 5c: VXU^V04
# ==========================================================================
add('epic', 'VXU', 'V04', [
    msh('EPIC', 'UHMC PEDS', '20260325100000-0500', 'VXU^V04^VXU_V04', 'EPC2026032510000601', '2.5.1',
        rapp='IIS', rfac='STATEIIS', ack=False,
        extra={15: 'ER', 16: 'AL', 21: 'Z22^CDCPHINVS'}),
    seg('PID', {1: '1', 3: r'E1000900^^^UHMC^MR~900100900^^^EMPI^PI', 5: 'Rivera^Mateo^^^^^L',
                6: 'Santos^Lucia^^^^^M', 7: '20240115', 8: 'M', 10: '2106-3^White^CDCREC',
                11: '77 Lake Dr^^Springfield^IL^62704^USA^P', 13: '^PRN^PH^^1^217^5550160',
                22: '2135-2^Hispanic or Latino^CDCREC'}),
    r'PD1|||||||||||02^Reminder/recall - any method^HL70215|N|20260325|||A|20240115|20240115',
    seg('NK1', {1: '1', 2: 'Rivera^Lucia^^^^^L', 3: 'MTH^Mother^HL70063', 4: '77 Lake Dr^^Springfield^IL^62704^USA^P',
                5: '^PRN^PH^^1^217^5550160'}),
    r'ORC|RE||IZ-9001^UHMC|||||||||1001^Welby^Marcus^A^^^^^^^^^^^MD',
    r'RXA|0|1|20260325093000-0500||08^Hep B, adolescent or pediatric^CVX|0.5|mL^milliliters^UCUM||00^New immunization record^NIP001|2001^Nurse^Nina^^^^^^^^^^^RN|^^^UHMC PEDS||||HB2026A|20270131|MSD^Merck and Co., Inc.^MVX|||CP|A',
    r'RXR|C28161^Intramuscular^NCIT|RT^Right Thigh^HL70163',
    r'OBX|1|CE|64994-7^Vaccine funding program eligibility category^LN|1|V02^VFC eligible - Medicaid/Medicaid Managed Care^HL70064||||||F|||20260325|||VXC40^Eligibility captured at the immunization level^CDCPHINVS',
    r'OBX|2|CE|30956-7^Vaccine type^LN|2|45^Hep B, unspecified formulation^CVX||||||F',
    r'OBX|3|TS|29768-9^Date vaccine information statement published^LN|2|20230512||||||F',
    r'OBX|4|TS|29769-7^Date vaccine information statement presented^LN|2|20260325||||||F',
    r'ORC|RE||IZ-9002^UHMC|||||||||1001^Welby^Marcus^A^^^^^^^^^^^MD',
    r'RXA|0|1|20260325093500-0500||10^IPV^CVX|0.5|mL^milliliters^UCUM||00^New immunization record^NIP001|2001^Nurse^Nina^^^^^^^^^^^RN|^^^UHMC PEDS||||IPV77X|20261130|PMC^Sanofi Pasteur^MVX|||CP|A',
    r'RXR|C28161^Intramuscular^NCIT|LT^Left Thigh^HL70163',
    r'OBX|1|CE|64994-7^Vaccine funding program eligibility category^LN|1|V02^VFC eligible - Medicaid/Medicaid Managed Care^HL70064||||||F|||20260325|||VXC40^Eligibility captured at the immunization level^CDCPHINVS',
    r'OBX|2|CE|69764-9^Document type^LN|2|253088698300017211160720^Polio VIS^cdcgs1vis||||||F',
    r'OBX|3|TS|29769-7^Date vaccine information statement presented^LN|2|20260325||||||F',
], 'CDC IIS-style VXU (MSH-21 Z22): PD1 registry fields, NK1, two ORDER groups ORC/RXA/RXR/OBX with '
   'funding eligibility (64994-7) and VIS (69764-9/29768-9/29769-7)')

add('athena', 'VXU', 'V04', [
    msh('ATHENANET', 'ATHENA_CLINIC_1207', '20260326111500-0500', 'VXU^V04^VXU_V04', 'ATH-5d2c9e1a-0601', '2.5.1',
        rapp='IIS', rfac='MAIIS', extra={21: 'Z22^CDCPHINVS'}),
    seg('PID', {1: '1', 3: '1207-301^^^ATHENA^MR', 5: "O'Brien^Aoife", 7: '20200606', 8: 'F'}),
    seg('NK1', {1: '1', 2: "O'Brien^Siobhan", 3: 'MTH^Mother^HL70063', 5: '^PRN^PH^^1^617^5550100'}),
    r'ORC|RE||9999^ATHENA',
    r'RXA|0|1|20260326||88^Influenza, unspecified formulation^CVX|999||||||||||||00^Parental decision^NIP002||RE',
    r'OBX|1|CE|30945-0^Vaccination contraindication^LN|1|VXC19^Parental refusal^CDCPHINVS||||||F',
], 'Refusal: RXA-6 999, RXA-18 00 Parental decision (NIP002), RXA-20 RE; still one Immunization (status not-done)')

add('openemr', 'VXU', 'V04', [
    msh('OPENEMR', 'Greenfield Clinic', '20260327090000-0600', 'VXU^V04', 'OEMR-000601', '2.5.1'),
    seg('PID', {1: '1', 3: '1077^^^OPENEMR^MR', 5: 'Reyes^Camila', 7: '20150930', 8: 'F'}),
    seg('NK1', {1: '1', 2: 'Reyes^Luis', 3: 'FTH^Father^HL70063'}),
    seg('NK1', {1: '2', 2: 'Reyes^Ana', 3: 'MTH^Mother^HL70063'}),
    r'ORC|RE||OE-IZ-1',
    r'RXA|0|1|20160930||20^DTaP^CVX|999|||01^Historical information - source unspecified^NIP001|||||||||||CP|A',
    r'ORC|RE||OE-IZ-2',
    r'RXA|0|1|201702||03^MMR^CVX|999|||01^Historical information - source unspecified^NIP001|||||||||||CP|A',
    r'ORC|RE||OE-IZ-3',
    r'RXA|0|1|2019||21^Varicella^CVX|999|||06^Historical information - from parent written record^NIP001|||||||||||CP|A',
], 'Historical immunizations (RXA-9 01/06) with RXA-3 at YYYYMMDD, YYYYMM and YYYY precision; NK1 x2; no MSH-9.3')

add('meditech', 'VXU', 'V04', [
    msh('MEDITECH', 'MTCLINIC', '20260328101500-0500', 'VXU^V04^VXU_V04', 'MT.20260328.000601', '2.5.1',
        charset='UNICODE UTF-8'),
    seg('PID', {1: '1', 3: r'M001200^^^MTHOSP^MR~999-70-1200^^^SSA^SS', 5: 'Nguyễn^Zoë^Minh', 7: '19920302',
                8: 'F', 11: '5 Ngõ Huế^^Hartford^CT^06103^USA'}),
    r'ORC|RE||MT-IZ-301',
    r'RXA|0|1|20260328094500-0500||141^Influenza, seasonal, injectable^CVX|0.5|mL^^UCUM||00^New record^NIP001||^^^MTCLINIC||||FLU26Q|20260630|SKB^GlaxoSmithKline^MVX|||CP|A',
    r'RXR|C28161^Intramuscular^NCIT|LD^Left Deltoid^HL70163',
    r'OBX|1|CE|64994-7^Vaccine funding program eligibility category^LN|1|V01^Not VFC eligible^HL70064||||||F',
    r'ORC|RE||MT-IZ-302',
    r'RXA|0|1|20260328095000-0500||213^SARS-COV-2 (COVID-19) vaccine, UNSPECIFIED FORMULATION^CVX|0.3|mL^^UCUM||00^New record^NIP001||^^^MTCLINIC||||CV26X|20260901|PFR^Pfizer^MVX|||CP|A',
    r'RXR|C28161^Intramuscular^NCIT|RD^Right Deltoid^HL70163',
], 'Adult VXU with UTF-8 name (Nguyễn Zoë), MSH-18 UNICODE UTF-8, two RXA with RXR, eligibility OBX')

add('cerner', 'VXU', 'V04', [
    msh('HNAM', 'CMC', '20260329080000', 'VXU^V04', 'Q1987654321T601', '2.3.1', rapp='IIS'),
    seg('PID', {1: '1', 3: '7702001^^^CMC^MR', 5: 'Ivanova^Baby Girl', 7: '202603140342', 8: 'F'}),
    seg('NK1', {1: '1', 2: 'Ivanova^Katya', 3: 'MTH^Mother^HL70063'}),
    r'RXA|0|999|20260314090000|20260314090000|08^HEPB-PEDS^CVX|0.5|ML||||||||HB2026B||MSD^MERCK^MVX',
    r'RXR|IM^Intramuscular^HL70162|LT^Left Thigh^HL70163',
], 'v2.3.1-style VXU without ORC (RXA only), RXR with HL70162 route, newborn PID-7 with time, no MSH-9.3')

# ==========================================================================
# GROUP 5b: leniency -- what real senders send (issue 11)
# ==========================================================================
# --- Lab feed: empty MSH-11 (processing id), no MSH-15/16 --------------------
add('labfeed', 'ADT', 'A01', [
    msh('LABFEED', 'REGIONAL LAB', '20260318101500-0500', 'ADT^A01', 'LF-0001', '2.5.1', proc='', ack=False),
    r'EVN|A01|20260318101500-0500',
    seg('PID', {1: '1', 3: '1042^^^OPENEMR^MR', 5: 'Doe^Johnathan', 7: '19480101', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'I', 3: 'WARD A^^^REGIONAL LAB'}),
], 'Empty MSH-11 (processing id): taken as P (listener default_processing_id); no MSH-15/16')

# --- Vendor interface engine: padded coded fields -----------------------------
add('labfeed', 'ADT', 'A08', [
    msh('LABFEED', 'REGIONAL LAB', '20260318102000-0500', 'ADT^A08', 'LF-0002', '2.5.1 ', proc='P ',
        extra={15: 'AL ', 16: 'NE ', 18: 'UNICODE UTF-8 '}),
    r'EVN|A08|20260318102000-0500',
    seg('PID', {1: '1', 3: '1042^^^OPENEMR^MR', 5: 'Peña^Zoë', 7: '19480101', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'O'}),
], 'Coded MSH fields padded with spaces (MSH-11 `P `, MSH-12 `2.5.1 `, MSH-15 `AL `, MSH-16 `NE `, MSH-18 `UNICODE UTF-8 `): trimmed')

# --- European sender: MSH-18 8859/15 with latin-9 bytes -----------------------
add('labfeed', 'ADT', 'A04', [
    msh('LABFEED', 'KLINIKUM', '20260318103000+0100', 'ADT^A04', 'LF-0003', '2.5', charset='8859/15'),
    r'EVN|A04|20260318103000+0100',
    seg('PID', {1: '1', 3: '1043^^^OPENEMR^MR', 5: 'Šimon^Žaneta', 7: '19700505', 8: 'F',
                11: 'Œuvrestraße 5^^Köln^^50667^DEU'}),
    seg('PV1', {1: '1', 2: 'O'}),
], 'MSH-18 8859/15 (table 0211) with ISO 8859-15 bytes: Š 0xA6, Ž 0xB4, Œ 0xBC, ß 0xDF, ö 0xF6', encoding='iso8859_15')

# --- Sender declaring the alias UNICODE (table 0211) with UTF-8 bytes ----------
add('labfeed', 'ADT', 'A31', [
    msh('LABFEED', 'REGIONAL LAB', '20260318104000-0500', 'ADT^A31', 'LF-0004', '2.5.1', charset='UNICODE',
        extra={15: ' ', 16: 'XX'}),
    r'EVN|A31|20260318104000-0500',
    seg('PID', {1: '1', 3: '1044^^^OPENEMR^MR', 5: 'Nguyễn^Thị', 7: '19900202', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'O'}),
], 'MSH-18 UNICODE (read as UTF-8), MSH-15 a blank, MSH-16 `XX` (not in table 0155): original mode with a warning')

# ==========================================================================
# GROUP 5c: coverage of more message types (issue 11, item 3)
# ==========================================================================
# --- Epic A17: swap two inpatients' beds -------------------------------------
add('epic', 'ADT', 'A17', [
    msh('EPIC', 'UHMC', '20260402021500-0500', 'ADT^A17^ADT_A17', 'EPC2026040202150017', '2.5.1'),
    r'EVN|A17|20260402021500-0500|||RNJONES^Jones^Rita^^^^^^UHMC|20260402021000-0500',
    seg('PID', {1: '1', 3: r'E1000201^^^UHMC^MR~900100201^^^EMPI^PI', 5: 'Hollis^Grant^T', 7: '19590804', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'I', 3: '4W^412^B^UHMC', 6: '4W^410^A^UHMC', 7: '1003^Grey^Meredith^^^Dr^MD',
                10: 'MED', 19: 'V2026033000201^^^UHMC^VN', 44: '20260330180000-0500'}),
    r'OBX|1|NM|8302-2^Body height^LN||181|cm^centimeter^UCUM|||||F|||20260330183000-0500',
    seg('PID', {1: '2', 3: r'E1000202^^^UHMC^MR~900100202^^^EMPI^PI', 5: 'Ibarra^Luis^M', 7: '19670122', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'I', 3: '4W^410^A^UHMC', 6: '4W^412^B^UHMC', 7: '1003^Grey^Meredith^^^Dr^MD',
                10: 'MED', 19: 'V2026033100202^^^UHMC^VN', 44: '20260331090000-0500'}),
    r'ZPV|1|BED_SWAP|INFECTION_CONTROL',
], 'Bed swap (A17): two PID/PV1 groups, each PV1-3 the bed the other had (PV1-6), OBX in the first group, ZPV')

# --- Cerner A23: delete a visit ------------------------------------------------
add('cerner', 'ADT', 'A23', [
    msh('HNAM', 'CMC', '20260402094500-0500', 'ADT^A23^ADT_A21', 'Q1987654321T2301', '2.5.1'),
    r'EVN|A23|20260402094500-0500',
    seg('PID', {1: '1', 3: '7700456^^^CMC^MR', 5: 'Whitfield^Nora', 7: '19880309', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'ORTHOCL^^^CMC', 19: '8800456001^^^CMC^VN', 44: '20260401140000-0500'}),
], 'Delete a visit (A23, ADT_A21): the visit registered in error -> Encounter entered-in-error')

# --- Meditech A29: delete person information ----------------------------------
add('meditech', 'ADT', 'A29', [
    msh('MEDITECH', 'MTHOSP', '20260402101500', 'ADT^A29^ADT_A21', 'MT.20260402.002901', '2.4'),
    r'EVN|A29|20260402101500',
    seg('PID', {1: '1', 3: 'M000930^^^MTHOSP^MR', 5: 'Duplicate^Test^Record', 7: '19000101', 8: 'U'}),
    seg('PV1', {1: '1', 2: 'N'}),
], 'Delete person information (A29, ADT_A21): pseudo PV1 `N` (no Encounter); the Patient as the message gives it',
    drop=('Encounter',))

# --- Epic A37: unlink two records an A24 linked -------------------------------
add('epic', 'ADT', 'A37', [
    msh('EPIC', 'UHMC', '20260402111500-0500', 'ADT^A37^ADT_A37', 'EPC2026040211150037', '2.5.1'),
    r'EVN|A37|20260402111500-0500',
    seg('PID', {1: '1', 3: r'E1000301^^^UHMC^MR~900100301^^^EMPI^PI', 5: 'Lindqvist^Astrid', 7: '19930217', 8: 'F'}),
    seg('PID', {1: '2', 3: r'E1000302^^^UHMC^MR~900100302^^^EMPI^PI', 5: 'Lindqvist^Astrid^M', 7: '19930217',
                8: 'F'}),
], 'Unlink patient information (A37): two PIDs, written without the seealso links an A24 added')

# --- MDM notifications without content (MDM_T01) ------------------------------
add('epic', 'MDM', 'T01', [
    msh('EPIC', 'UHMC', '20260403080000-0500', 'MDM^T01^MDM_T01', 'EPC2026040308000001', '2.5.1'),
    r'EVN|T01|20260403080000-0500',
    seg('PID', {1: '1', 3: r'E1000077^^^UHMC^MR~900100077^^^EMPI^PI', 5: 'Brooks^Terrence^L', 7: '19830311',
                8: 'M'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'CARDCL^^^UHMC', 19: 'V2026040300077^^^UHMC^VN'}),
    seg('TXA', {1: '1', 2: 'CN^Consultation note^HL70270', 3: 'TX', 4: '20260403074500-0500',
                5: '1003^Grey^Meredith^^^Dr^MD', 6: '20260403074000-0500', 12: 'DOC-2026-0101^EPIC',
                16: 'consult_0101.txt', 17: 'IP', 19: 'AV'}),
], 'Original document notification (T01): TXA only, no OBX; TXA-16 file name is the attachment title')

add('cerner', 'MDM', 'T03', [
    msh('HNAM', 'CMC', '20260403091500-0500', 'MDM^T03^MDM_T01', 'Q1987654321T0301', '2.5.1'),
    r'EVN|T03|20260403091500-0500',
    seg('PID', {1: '1', 3: '7700123^^^CMC^MR', 5: r'Garcia\T\Lopez^Maria^Elena', 7: '19650923', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'SURGCL^^^CMC'}),
    seg('TXA', {1: '1', 2: 'OP^Operative report^HL70270', 3: 'TX', 4: '20260402160000-0500',
                9: '3110^Osler^William^^^Dr', 10: '3110^Osler^William^^^Dr', 12: 'CMC-DOC-55001^HNAM',
                17: 'AU', 19: 'AV'}),
], 'Document status change notification (T03): authenticated (TXA-17 AU, TXA-10)')

add('meditech', 'MDM', 'T05', [
    msh('MEDITECH', 'MTHOSP', '20260403101500', 'MDM^T05^MDM_T01', 'MT.20260403.000501', '2.4'),
    r'EVN|T05|20260403101500',
    seg('PID', {1: '1', 3: 'M000812^^^MTHOSP^MR', 5: 'Okafor^Chidi^N', 7: '19720530', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'I', 3: '3N^305^1^MTHOSP'}),
    seg('TXA', {1: '1', 2: 'PN^Progress note^HL70270', 3: 'TX', 4: '20260403100000',
                12: 'MT-PN-7702^MEDITECH', 13: 'MT-PN-7701^MEDITECH', 17: 'DO', 19: 'AV'}),
], 'Document addendum notification (T05): TXA-13 parent -> relatesTo appends; no OBX')

add('athena', 'MDM', 'T07', [
    msh('ATHENANET', 'ATHENA_CLINIC_8821', '20260403111500-0500', 'MDM^T07^MDM_T01', 'ATH-5d2c9e1a-0701',
        '2.5.1'),
    r'EVN|T07|20260403111500-0500',
    seg('PID', {1: '1', 3: '8821-44501^^^ATHENA^MR', 5: 'Patel^Arjun^K', 7: '19910704', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'IM^^^ATHENA_CLINIC_8821'}),
    seg('TXA', {1: '1', 2: 'PN^Progress note^HL70270', 3: 'TX', 4: '20260403110000-0500',
                12: 'ATHDOC-3102^ATHENA', 13: 'ATHDOC-3101^ATHENA', 17: 'AU', 19: 'AV'}),
], 'Document edit notification (T07): TXA-13 parent -> relatesTo replaces')

add('openemr', 'MDM', 'T09', [
    msh('OPENEMR', 'Greenfield Clinic', '20260403121500-0600', 'MDM^T09^MDM_T01', 'OEMR-000901', '2.5.1'),
    r'EVN|T09|20260403121500-0600',
    seg('PID', {1: '1', 3: '1043^^^OPENEMR^MR', 5: 'Muñoz^Zoë^Inés', 7: '20010214', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'CLINIC1^^^Greenfield Clinic'}),
    seg('TXA', {1: '1', 2: 'DS^Discharge summary^HL70270', 3: 'TX', 4: '20260403120000-0600',
                12: 'OE-DOC-902^OPENEMR', 13: 'OE-DOC-901^OPENEMR', 17: 'AU', 19: 'AV'}),
], 'Document replacement notification (T09): new TXA-12 replaces TXA-13 (relatesTo replaces)')

add('epic', 'MDM', 'T11', [
    msh('EPIC', 'UHMC', '20260403131500-0500', 'MDM^T11^MDM_T01', 'EPC2026040313150011', '2.5.1'),
    r'EVN|T11|20260403131500-0500',
    seg('PID', {1: '1', 3: r'E1000077^^^UHMC^MR~900100077^^^EMPI^PI', 5: 'Brooks^Terrence^L', 7: '19830311',
                8: 'M'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'CARDCL^^^UHMC', 19: 'V2026040300077^^^UHMC^VN'}),
    seg('TXA', {1: '1', 2: 'CN^Consultation note^HL70270', 3: 'TX', 4: '20260403074500-0500',
                12: 'DOC-2026-0101^EPIC', 17: 'IP', 19: 'CA'}),
], 'Document cancel notification (T11): the DocumentReference entered-in-error')

# --- BAR: account management ------------------------------------------------------
add('epic', 'BAR', 'P01', [
    msh('EPIC', 'UHMC', '20260404070000-0500', 'BAR^P01^BAR_P01', 'EPC2026040407000001', '2.5.1', rapp='HBGW'),
    r'EVN|P01|20260404070000-0500',
    seg('PID', {1: '1', 3: r'E1000401^^^UHMC^MR~900100401^^^EMPI^PI', 5: 'Fairbanks^Celia^A', 7: '19700606',
                8: 'F', 11: '45 Birch Rd^^Springfield^IL^62704^USA', 18: 'HAR2026040401^^^UHMC^AN'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'ENDO^^^UHMC', 7: '2201^Shepherd^Derek^^^Dr^MD',
                19: 'V2026040400401^^^UHMC^VN', 44: '20260404063000-0500'}),
    r'DG1|1||K21.9^Gastro-esophageal reflux disease without esophagitis^I10|||F',
    r'PR1|1||43239^EGD with biopsy^CPT||20260404064500-0500',
    seg('GT1', {1: '1', 3: 'Fairbanks^Celia^A', 5: '45 Birch Rd^^Springfield^IL^62704^USA', 11: 'SEL^Self^HL70063'}),
    r'IN1|1|PPO1^Blue PPO^L|BCBSIL^^^^^^^^^^NIIP|Blue Cross Blue Shield of Illinois||||GRP7781||||20260101|20261231|||||01^Self^HL70063|||||||||||||||||||BCX445566',
    r'ZBA|1|HB|PREREG',
], 'Add billing account (P01): PID-18 account, VISIT with DG1, PR1, GT1 self, IN1; ZBA')

add('cerner', 'BAR', 'P05', [
    msh('HNAM', 'CMC', '20260404091500-0500', 'BAR^P05', 'Q1987654321T0501', '2.5', rapp='PFTGW'),
    r'EVN|P05|20260404091500-0500',
    seg('PID', {1: '1', 3: '7700456^^^CMC^MR', 5: 'Whitfield^Nora', 7: '19880309', 8: 'F',
                18: '8800456002^^^CMC^AN'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'ORTHOCL^^^CMC', 19: '8800456002^^^CMC^VN', 44: '20260403100000-0500'}),
    seg('GT1', {1: '1', 2: 'G88001^^^CMC', 3: 'Whitfield^Owen', 5: '9 Oak Ave^^Columbia^MO^65201^USA',
                6: '^PRN^PH^^1^573^5550111', 11: 'SPO^Spouse^HL70063'}),
], 'Update account (P05, no MSH-9.3): guarantor spouse (GT1 -> RelatedPerson)')

add('meditech', 'BAR', 'P06', [
    msh('MEDITECH', 'MTHOSP', '20260404110000', 'BAR^P06^BAR_P06', 'MT.20260404.000601', '2.4'),
    r'EVN|P06|20260404110000',
    seg('PID', {1: '1', 3: 'M000812^^^MTHOSP^MR', 5: 'Okafor^Chidi^N', 7: '19720530', 8: 'M',
                18: 'MTA000812-3^^^MTHOSP^AN'}),
    seg('PV1', {1: '1', 2: 'I', 3: '3N^305^1^MTHOSP', 19: 'MTV000812-3^^^MTHOSP^VN', 45: '20260402120000'}),
], 'End account (P06): Account inactive')

# --- DFT: charges -------------------------------------------------------------
add('epic', 'DFT', 'P03', [
    msh('EPIC', 'UHMC', '20260404150000-0500', 'DFT^P03^DFT_P03', 'EPC2026040415000003', '2.5.1', rapp='HBGW'),
    r'EVN|P03|20260404150000-0500',
    seg('PID', {1: '1', 3: r'E1000401^^^UHMC^MR~900100401^^^EMPI^PI', 5: 'Fairbanks^Celia^A', 7: '19700606',
                8: 'F', 18: 'HAR2026040401^^^UHMC^AN'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'ENDO^^^UHMC', 19: 'V2026040400401^^^UHMC^VN'}),
    r'FT1|1|CHG-881001|B0404|20260404064500-0500|20260404150000-0500|CG|43239^EGD with biopsy^CPT|||1|1250.00&USD|||||ENDO^^^UHMC|||K21.9^GERD^I10|2201^Shepherd^Derek^^^Dr^MD',
    r'FT1|2||B0404|20260404065000-0500|20260404150000-0500|CG|88305^Surgical pathology^CPT|||2|180.00&USD|||||ENDO^^^UHMC|||K21.9^GERD^I10',
    r'DG1|1||K21.9^Gastro-esophageal reflux disease without esophagitis^I10|||F',
    seg('GT1', {1: '1', 3: 'Fairbanks^Celia^A', 11: 'SEL^Self^HL70063'}),
    r'ZFT|1|HB|POSTED',
], 'Post charges (P03): two FT1 (one with FT1-2 transaction ID, one without), FT1-11 CP amount, DG1, GT1, ZFT')

add('cerner', 'DFT', 'P11', [
    msh('HNAM', 'CMC', '20260404170000-0500', 'DFT^P11^DFT_P11', 'Q1987654321T1101', '2.6', rapp='PFTGW'),
    r'EVN|P11|20260404170000-0500',
    seg('PID', {1: '1', 3: '7700456^^^CMC^MR', 5: 'Whitfield^Nora', 7: '19880309', 8: 'F',
                18: '8800456002^^^CMC^AN'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'ORTHOCL^^^CMC', 19: '8800456002^^^CMC^VN'}),
    r'DG1|1||S83.512A^Sprain of anterior cruciate ligament of left knee, initial encounter^I10|||A',
    r'FT1|1|CMC-TX-99001||20260403100000-0500||CG|99204^New patient visit, level 4^CPT|||1|310.00&USD',
    r'PR1|1||99204^New patient visit, level 4^CPT||20260403100000-0500',
    r'FT1|2|CMC-TX-99002||20260403103000-0500||CG|73721^MRI knee without contrast^CPT|||1|1450.00&USD',
    r'FT1|3|CMC-TX-99003||20260403110000-0500||PY|PAT^Patient payment^L|||1|40.00&USD',
], 'Post charges expanded (P11), v2.6: FINANCIAL groups with PR1, a payment FT1 (PY: not a ChargeItem)')

# --- Pharmacy: RDE / RDS ------------------------------------------------------
add('epic', 'RDE', 'O11', [
    msh('EPIC', 'UHMC', '20260405080000-0500', 'RDE^O11^RDE_O11', 'EPC2026040508000011', '2.5.1', rapp='PHARMGW'),
    seg('PID', {1: '1', 3: r'E1000201^^^UHMC^MR~900100201^^^EMPI^PI', 5: 'Hollis^Grant^T', 7: '19590804', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'I', 3: '4W^410^A^UHMC', 19: 'V2026033000201^^^UHMC^VN'}),
    r'AL1|1|DA^Drug allergy^HL70127|7980^Penicillin G^RXNORM|SV^Severe^HL70128|Anaphylaxis',
    r'ORC|NW|ORD-77120^EPIC|RX-55120^EPICRX||||||20260405075500-0500|||1003^Grey^Meredith^^^Dr^MD',
    r'RXE||197361^Amlodipine 5 MG Oral Tablet^RXNORM|5||mg^milligram^UCUM|TAB^Tablet^HL70292|^Take with water|||30|TAB^Tablet^HL70292|2|||RX-EP-440120',
    r'NTE|1|P|Hold for SBP < 100.',
    r'TQ1|1||QD&Every day&HL70335||||20260405090000-0500|20260505090000-0500|R',
    r'RXR|PO^Oral^HL70162',
    r'ZRX|1|FORMULARY|TIER1',
], 'Pharmacy encoded order (O11): ORC NW, RXE dose/dispense/refills/Rx number, TQ1 timing, RXR route, NTE, ZRX')

add('cerner', 'RDS', 'O13', [
    msh('HNAM', 'CMC', '20260405140000-0500', 'RDS^O13^RDS_O13', 'Q1987654321T1301', '2.5.1', rapp='PHARMGW'),
    seg('PID', {1: '1', 3: '7700456^^^CMC^MR', 5: 'Whitfield^Nora', 7: '19880309', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'ORTHOCL^^^CMC', 19: '8800456002^^^CMC^VN'}),
    r'ORC|RE|CMC-ORD-3301^HNAM|CMC-RX-3301^HNAMRX||CM||||20260405133000-0500|||3110^Osler^William^^^Dr',
    r'RXE||310965^Ibuprofen 400 MG Oral Tablet^RXNORM|400||mg^milligram^UCUM|TAB^Tablet^HL70292||||20|TAB^Tablet^HL70292|0',
    r'TQ1|1||Q6H&Every 6 hours&HL70335|||||R',
    r'RXR|PO^Oral^HL70162',
    r'RXD|1|310965^Ibuprofen 400 MG Oral Tablet^RXNORM|20260405135500-0500|20|TAB^Tablet^HL70292||CMC-RX-3301-1||||3120^Bailey^Miranda^^^^PharmD',
    r'RXR|PO^Oral^HL70162',
], 'Pharmacy dispense (O13): ENCODING RXE (order, create-if-absent) + RXD -> MedicationDispense authorized by it')

# --- OMG O19 / OUL R22 ---------------------------------------------------------
add('meditech', 'OMG', 'O19', [
    msh('MEDITECH', 'MTHOSP', '20260405160000', 'OMG^O19^OMG_O19', 'MT.20260405.001901', '2.5.1', rapp='RADGW'),
    seg('PID', {1: '1', 3: 'M000812^^^MTHOSP^MR', 5: 'Okafor^Chidi^N', 7: '19720530', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'I', 3: '3N^305^1^MTHOSP', 19: 'MTV000812-4^^^MTHOSP^VN'}),
    r'ORC|NW|MT-ORD-9901^MEDITECH||MT-GRP-9901^MEDITECH|||^^^20260405170000^^S||20260405155500|||4410^Kovac^Ana^^^Dr',
    r'OBR|1|MT-ORD-9901^MEDITECH||93306^Echocardiogram complete^CPT|S|||||||||||4410^Kovac^Ana^^^Dr',
    r'NTE|1|P|Rule out pericardial effusion.',
    r'DG1|1||I31.3^Pericardial effusion (noninflammatory)^I10',
    r'OBX|1|NM|8867-4^Heart rate^LN||112|/min^beats per minute^UCUM|||||F',
], 'General clinical order (O19): ORC + OBR (echo), stat via ORC-7.6, NTE, DG1 reason, supporting OBX')

add('labfeed', 'OUL', 'R22', [
    msh('LABFEED', 'REGIONAL LAB', '20260405180000-0500', 'OUL^R22^OUL_R22', 'LF-2201', '2.5.1'),
    seg('PID', {1: '1', 3: '1042^^^OPENEMR^MR', 5: 'Doe^Johnathan', 7: '19480101', 8: 'M'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'DRAW^^^REGIONAL LAB'}),
    r'SPM|1|SP-55001&RLAB||BLD^Whole blood^HL70487|||VENIP^Venipuncture^HL70488||||||||||20260405163000-0500|20260405171500-0500',
    r'OBX|1|NM|SPECVOL^Specimen volume^L||4|mL^milliliter^UCUM|||||F',
    r'SAC|||TUBE-55001-1||||||||||||||||||||||5|mL^milliliter^UCUM',
    r'OBR|1|ORD-4401^OPENEMR|RLAB-4401^RLAB|24323-8^Comprehensive metabolic panel^LN|||20260405163000-0500|||||||||||||||20260405175500-0500||CH|F',
    r'ORC|SC|ORD-4401^OPENEMR|RLAB-4401^RLAB||CM',
    r'OBX|1|NM|2951-2^Sodium^LN||139|mmol/L^millimole per liter^UCUM|136-145|N|||F',
    r'OBX|2|NM|2823-3^Potassium^LN||5.9|mmol/L^millimole per liter^UCUM|3.5-5.1|H|||F',
    r'NTE|1|L|Specimen slightly hemolyzed.',
], 'Specimen-oriented results (R22): SPM + specimen OBX + SAC, OBR + ORC + two results (one with NTE)')

# --- REF I12 / PPR PC1 ------------------------------------------------------------
add('athena', 'REF', 'I12', [
    msh('ATHENANET', 'ATHENA_CLINIC_8821', '20260406090000-0500', 'REF^I12^REF_I12', 'ATH-5d2c9e1a-1201',
        '2.5.1', rapp='REFGW'),
    r'RF1|A^Accepted^HL70283|R^Routine^HL70280|CARD^Cardiology^L|O^Outpatient^HL70284||ATH-REF-8801^ATHENA|20260406|20260706||R07.9^Chest pain, unspecified^I10',
    r'PRD|RP^Referring provider^HL70286|House^Gregory^^^Dr|1 Clinic Way^^Princeton^NJ^08540^USA||^WPN^PH^^1^609^5550100||5150^NPI',
    r'PRD|RT^Referred to provider^HL70286|Burke^Preston^^^Dr|2 Heart Plaza^^Princeton^NJ^08540^USA||^WPN^PH^^1^609^5550200||6620^NPI',
    seg('PID', {1: '1', 3: '8821-44501^^^ATHENA^MR', 5: 'Patel^Arjun^K', 7: '19910704', 8: 'M'}),
    r'DG1|1||R07.9^Chest pain, unspecified^I10|||W',
    r'OBR|1||ATH-LAB-771^ATHENA|24331-1^Lipid panel^LN|||20260401080000-0500||||||||||||||||||F',
    r'OBX|1|NM|2093-3^Cholesterol^LN||242|mg/dL^^UCUM|<200|H|||F',
    seg('PV1', {1: '1', 2: 'O', 3: 'IM^^^ATHENA_CLINIC_8821'}),
    r'NTE|1||Exertional chest pain for 3 weeks; please see within 2 weeks.',
], 'Referral (I12): RF1 accepted, PRD referring + referred-to, DG1 reason, OBR/OBX supporting result, NTE')

add('openemr', 'PPR', 'PC1', [
    msh('OPENEMR', 'Greenfield Clinic', '20260406103000-0600', 'PPR^PC1^PPR_PC1', 'OEMR-PC0001', '2.5.1'),
    seg('PID', {1: '1', 3: '1043^^^OPENEMR^MR', 5: 'Muñoz^Zoë^Inés', 7: '20010214', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'O', 3: 'CLINIC1^^^Greenfield Clinic'}),
    r'PRB|AD|20260406103000-0600|195967001^Asthma^SCT|OE-PRB-301^OPENEMR|||20260406||||||C^Confirmed|A^Active||20150901',
    r'NTE|1||Exercise-induced; uses albuterol before sports.',
    r'ROL|1|AD|AT^Attending^HL70443|3301^Ortíz^Álvaro^^^Dr',
    r'OBX|1|NM|19935-6^Peak expiratory flow^LN||390|L/min^liter per minute^UCUM|||||F',
    r'PRB|AD|20260406103000-0600|84229001^Fatigue^SCT|OE-PRB-302^OPENEMR|||20260406|||20260301|||P^Provisional|R^Resolved',
], 'Problem add (PC1): two PRB (confirmed active asthma with NTE, ROL asserter, OBX evidence; resolved fatigue)')

# ==========================================================================
# GROUP 6: batch/ and invalid/
# ==========================================================================
def add_extra(subdir, name, segs, vendor, kind, desc, sep='\r', encoding='utf-8'):
    EXTRA_FILES.append((subdir, name, (sep.join(segs) + sep).encode(encoding), vendor, kind, desc))


def _batch_msgs(app, fac, ts, ctrl_prefix):
    return [
        msh(app, fac, ts, 'ADT^A08^ADT_A01', ctrl_prefix + '01', '2.5.1'),
        r'EVN|A08|' + ts,
        seg('PID', {1: '1', 3: 'B100001^^^%s^MR' % fac, 5: 'Batchley^Alice', 7: '19800101', 8: 'F'}),
        seg('PV1', {1: '1', 2: 'O', 3: 'CLIN^^^%s' % fac}),
        msh(app, fac, ts, 'ADT^A04^ADT_A01', ctrl_prefix + '02', '2.5.1'),
        r'EVN|A04|' + ts,
        seg('PID', {1: '1', 3: 'B100002^^^%s^MR' % fac, 5: 'Batchley^Bob', 7: '19820202', 8: 'M'}),
        seg('PV1', {1: '1', 2: 'O', 3: 'CLIN^^^%s' % fac}),
        msh(app, fac, ts, 'ORU^R01^ORU_R01', ctrl_prefix + '03', '2.5.1'),
        seg('PID', {1: '1', 3: 'B100001^^^%s^MR' % fac, 5: 'Batchley^Alice', 7: '19800101', 8: 'F'}),
        seg('OBR', {1: '1', 3: 'BL-1^%s' % fac, 4: '2345-7^Glucose^LN', 25: 'F'}),
        r'OBX|1|NM|2345-7^Glucose [Mass/volume] in Serum or Plasma^LN||99|mg/dL^^UCUM|70-99|N|||F',
    ]


add_extra('batch', 'epic_batch_01.hl7', [
    r'FHS|^~\&|EPIC|UHMC|HL7GW|FHIRHUB|20260330010000-0500||NIGHTLY_20260330.hl7||FHS-EPC-0001',
    r'BHS|^~\&|EPIC|UHMC|HL7GW|FHIRHUB|20260330010000-0500||ADT+ORU||BHS-EPC-0001',
] + _batch_msgs('EPIC', 'UHMC', '20260330010000-0500', 'EPCBATCH0330') + [
    r'BTS|3|End of batch',
    r'FTS|1|End of file',
], 'epic', 'FHS/BHS batch', 'FHS/BHS + 3 messages (ADT^A08, ADT^A04, ORU^R01) + BTS-1 = 3 (correct) + FTS-1 = 1')

add_extra('batch', 'cerner_batch_01.hl7', [
    r'FHS|^~\&|HNAM|CMC|HL7GW|FHIRHUB|20260330020000-0500||||FHS-CMC-0001',
    r'BHS|^~\&|HNAM|CMC|HL7GW|FHIRHUB|20260330020000-0500||||BHS-CMC-0001',
] + _batch_msgs('HNAM', 'CMC', '20260330020000-0500', 'CMCBATCH0330') + [
    r'BTS|4|Count deliberately wrong',
    r'FTS|1',
], 'cerner', 'FHS/BHS batch', 'FHS/BHS + 3 messages but BTS-1 = 4 (WRONG; gateway should flag count mismatch)')

add_extra('invalid', 'no_msh.hl7', [
    r'EVN|A01|20260330030000',
    seg('PID', {1: '1', 3: 'X0001^^^NOWHERE^MR', 5: 'Nomsh^Nancy', 7: '19900101', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'I'}),
], 'epic', 'invalid', 'No MSH segment: starts with EVN -> reject')

add_extra('invalid', 'bad_msh2.hl7', [
    r'MSH|^~|MEDITECH|MTHOSP|HL7GW|FHIRHUB|20260330030500||ADT^A08|MT.INVALID.0002|P|2.4',
    r'EVN|A08|20260330030500',
    seg('PID', {1: '1', 3: 'X0002^^^MTHOSP^MR', 5: 'Badenc^Bert', 7: '19900101', 8: 'M'}),
], 'meditech', 'invalid', "MSH-2 only 2 characters ('^~') -> reject (no escape/sub-component chars)")

add_extra('invalid', 'charset_iso_ir159.hl7', [
    msh('ATHENANET', 'ATHENA_JP', '20260330031000+0900', 'ADT^A08^ADT_A01', 'ATH-INVALID-0003', '2.5.1',
        charset='ISO IR159'),
    r'EVN|A08|20260330031000+0900',
    seg('PID', {1: '1', 3: 'JP0003^^^ATHENA_JP^MR', 5: '山田^太郎', 7: '19700101', 8: 'M'}),
], 'athena', 'invalid', "MSH-18 'ISO IR159' (JIS X 0212: no decoder in encoding_rs) -> unsupported charset, reject",
    encoding='iso2022_jp')

add_extra('invalid', 'version_22.hl7', [
    msh('OPENEMR', 'Greenfield Clinic', '20260330031500', 'ADT^A01', 'OEMR-INVALID-0004', '2.2', ack=False),
    r'EVN|A01|20260330031500',
    seg('PID', {1: '1', 3: '9999^^^OPENEMR^MR', 5: 'Oldversion^Olga', 7: '19500101', 8: 'F'}),
    seg('PV1', {1: '1', 2: 'I'}),
], 'openemr', 'invalid', 'MSH-12 = 2.2 (below supported 2.3-2.8) -> reject')

# === END OF GROUPS ===


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------
def _clean(d):
    os.makedirs(d, exist_ok=True)
    for n in os.listdir(d):
        if n.endswith('.hl7'):
            os.remove(os.path.join(d, n))


def main():
    hl7_dir = os.path.join(ROOT, 'hl7')
    _clean(hl7_dir)
    for sub in ('batch', 'invalid'):
        _clean(os.path.join(ROOT, sub))

    seq = Counter()
    expected = OrderedDict()
    manifest = []
    seen_ctrl = {}
    for m in MESSAGES:
        prefix = '%s_%s_%s' % (m['vendor'], m['mtype'].lower(), m['trigger'].lower())
        seq[prefix] += 1
        name = '%s_%02d.hl7' % (prefix, seq[prefix])
        segs = m['segs']
        fs, enc, f = parse_msh(segs[0])
        ctrl = f[10]
        if ctrl in seen_ctrl:
            sys.exit('duplicate MSH-10 %s in %s and %s' % (ctrl, name, seen_ctrl[ctrl]))
        seen_ctrl[ctrl] = name
        cs = enc[0]
        mt = f[9].split(cs)
        assert mt[0] == m['mtype'] and mt[1] == m['trigger'], (name, f[9])
        if len(mt) > 2:
            assert mt[2] == m['structure'], (name, f[9], m['structure'])
        data = (m['sep'].join(segs) + m['sep']).encode(m['encoding'])
        if m['bom']:
            data = b'\xef\xbb\xbf' + data
        with open(os.path.join(hl7_dir, name), 'wb') as fh:
            fh.write(data)
        counts = count_resources(m['structure'], segs)
        for k in m['drop']:
            counts.pop(k, None)
        expected[name] = OrderedDict([
            ('structure', m['structure']),
            ('control_id', ctrl),
            ('resources', OrderedDict(sorted(counts.items()))),
        ])
        manifest.append((name, m['vendor'], '%s^%s (%s, v%s)' % (m['mtype'], m['trigger'],
                                                               m['structure'], f[12]), m['desc']))

    for sub, name, data, vendor, kind, desc in EXTRA_FILES:
        with open(os.path.join(ROOT, sub, name), 'wb') as fh:
            fh.write(data)
        manifest.append(('%s/%s' % (sub, name), vendor, kind, desc))

    with open(os.path.join(ROOT, 'expected.json'), 'w', encoding='utf-8') as fh:
        json.dump(expected, fh, indent=2, ensure_ascii=False)
        fh.write('\n')

    lines = [
        '# HL7 v2 test corpus',
        '',
        'Generated by `python3 tests/corpus/make_corpus.py` (stdlib only; all data fake). '
        'Do not edit the `.hl7` files or `expected.json` by hand -- edit the script and re-run.',
        '',
        '- `hl7/` one message per file, `<vendor>_<type>_<trigger>_<nn>.hl7`, CR-separated unless noted.',
        '- `batch/` FHS/BHS batch files.  `invalid/` inputs the gateway must reject.',
        '- `expected.json` per `hl7/` file: message structure, MSH-10, and FHIR resource counts '
        '(one per segment per the V2-to-FHIR IG message maps).  Only certain counts are listed: '
        'Specimen is omitted for ORU/OML (OBR also maps to Specimen there), Observation for MDM '
        '(OBX goes into DocumentReference) and VXU, Encounter for VXU; NK1 with NK1-3 EMR/E/F/I/S is not a '
        'RelatedPerson; ADT_A39 (A40) has no asserted counts.  BAR/DFT/RDE/RDS/OMG/OUL/REF/PPR have no IG '
        'message map: their counts follow the segment maps the converter applies (docs/CONVERSION.md); '
        'an FT1 that is not a charge (FT1-6 PY/AJ/CO) is no ChargeItem.',
        '',
        '| file | vendor | type | exercises |',
        '|---|---|---|---|',
    ]
    for name, vendor, kind, desc in manifest:
        lines.append('| %s | %s | %s | %s |' % (name, vendor, kind, desc.replace('|', '\\|')))
    with open(os.path.join(ROOT, 'MANIFEST.md'), 'w', encoding='utf-8') as fh:
        fh.write('\n'.join(lines) + '\n')

    by_type = Counter('%s^%s' % (m['mtype'], m['trigger']) for m in MESSAGES)
    print('hl7/: %d messages; extra files: %d' % (len(MESSAGES), len(EXTRA_FILES)))
    for k in sorted(by_type):
        print('  %-8s %d' % (k, by_type[k]))


if __name__ == '__main__':
    main()
