//! `gateway parse FILE`: each message of a file as an indented tree — the segment groups of
//! its structure, then per segment the fields that have a value, named for the common segments
//! (`PID-5 Patient Name`), with components (`PID-5.1`) and subcomponents (`PID-3.4.1`) indented
//! below when the field has more than one.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use super::{read_input, split_input};
use crate::hl7::field_names::field_name;
use crate::hl7::parser::{self, Field, Message, Presence, Segment};
use crate::hl7::structure::{self, Group, Node};

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

/// Values longer than this are shortened in the tree (base64 attachments).
const MAX_SHOWN: usize = 200;

/// One message as an indented tree: header line, the groups of its structure with their
/// segments and fields, then segments the structure did not place and required items that
/// are missing. A message of an unsupported structure is shown as a flat segment list.
pub(crate) fn render_tree(msg: &Message) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn long_values_and_control_characters() {
        assert_eq!(shown(Presence::Valued, "a\nb"), "a\\nb");
        let long = "x".repeat(300);
        assert!(shown(Presence::Valued, &long).ends_with("… (300 characters)"));
    }
}
