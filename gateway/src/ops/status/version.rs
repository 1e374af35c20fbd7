//! The binary's version, the appliance image's version and the boot slot.

use super::Version;

/// `IMAGE_VERSION` of an os-release file's text.
pub(crate) fn image_version(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        let v = l.trim().strip_prefix("IMAGE_VERSION=")?;
        let v = v.trim_matches(|c| c == '"' || c == '\'');
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// The slot `X` of `root=PARTLABEL=rootfs-X` on a kernel command line.
pub(crate) fn slot(cmdline: &str) -> Option<String> {
    cmdline.split_whitespace().find_map(|w| w.strip_prefix("root=PARTLABEL=rootfs-")).map(str::to_string)
}

/// This host's versions (read once at start).
pub(crate) fn current() -> Version {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    Version {
        binary: env!("CARGO_PKG_VERSION").into(),
        image: image_version(&read("/etc/os-release")),
        slot: slot(&read("/proc/cmdline")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_image_version_and_the_slot() {
        assert_eq!(image_version("ID=debian\nIMAGE_VERSION=\"2026.01.2\"\n"), Some("2026.01.2".into()));
        assert_eq!(image_version("ID=debian\n"), None);
        assert_eq!(slot("console=ttyS0 root=PARTLABEL=rootfs-b ro quiet"), Some("b".into()));
        assert_eq!(slot("root=/dev/sda1 ro"), None);
    }
}
