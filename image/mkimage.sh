#!/usr/bin/env bash
# Build the appliance disk image:
#   Debian bookworm (mmdebstrap) -> squashfs root -> GPT disk with
#   esp | rootfs-a | rootfs-b | data   (see image/README.md for the design)
#
# STATUS: this is a recipe, not a proven build. It has not been run end to end,
# the result has not been booted, and it is NOT run in CI. It writes the steps
# down precisely enough to be executed and debugged on a real build host; expect
# fixes the first time that happens. What is missing entirely is listed in
# image/README.md ("Not built yet").
#
# Usage: image/mkimage.sh [OUTPUT_DIR]          (default: target/image)
#   GATEWAY_BIN  gateway binary to install (default: target/release/gateway;
#                build it first: cargo build --release -p gateway)
#   MIRROR       Debian mirror URL (default: mmdebstrap's choice)
#
# Runs as an ordinary user: mmdebstrap --mode=unshare needs unprivileged user
# namespaces and /etc/subuid + /etc/subgid ranges for that user. Everything
# after the root filesystem works on plain files (no loop devices, no mounts).

set -euo pipefail

# mkfs.* and sfdisk live in sbin, which is not on an ordinary user's PATH on Debian.
PATH=$PATH:/usr/sbin:/sbin

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

# Disk layout, in MiB. The data partition is small in the image; growing it to
# fill the disk on first boot is not implemented yet.
esp_mib=256
root_mib=1024
data_mib=256
boot_tries=3       # failed boots of a slot before systemd-boot falls back
gateway_uid=950    # fixed: /var/lib/gateway (data partition) outlives A/B swaps

# GPT partition type GUIDs.
type_esp=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
type_root_x86_64=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709  # amd64 only for now
type_linux_data=0FC63DAF-8483-4772-8E79-3D69D8477DE4

die() {
    echo "mkimage: $*" >&2
    exit 1
}

check_tools() {
    local tool missing=()
    for tool in mmdebstrap tar2sqfs sfdisk mkfs.vfat mmd mcopy mkfs.ext4 truncate dd git; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        die "missing tools: ${missing[*]}
On Debian/Ubuntu:
  apt-get install mmdebstrap squashfs-tools-ng fdisk dosfstools mtools e2fsprogs coreutils git"
    fi
}

# Step 1: root filesystem, written by mmdebstrap straight to squashfs (via tar2sqfs).
# The customize hook runs inside mmdebstrap's namespace with the new root as $1.
build_rootfs() {
    local hook=$work/customize.sh
    cat >"$hook" <<'HOOK'
#!/bin/sh
set -eu
root=$1

# The service user. Fixed IDs so files on the data partition keep their owner.
chroot "$root" groupadd --system --gid "$MKIMAGE_UID" gateway
chroot "$root" useradd --system --uid "$MKIMAGE_UID" --gid gateway \
    --home-dir /var/lib/gateway --no-create-home --shell /usr/sbin/nologin gateway

install -D -m 0755 "$MKIMAGE_GATEWAY_BIN" "$root/usr/bin/gateway"
install -D -m 0644 "$MKIMAGE_HERE/systemd/gateway.service" "$root/usr/lib/systemd/system/gateway.service"
install -D -m 0644 "$MKIMAGE_HERE/nftables.conf" "$root/etc/nftables.conf"
install -D -m 0644 "$MKIMAGE_HERE/README.md" "$root/usr/share/doc/gateway/README.md"
mkdir -p "$root/etc/gateway" "$root/var/lib/gateway"
# Empty mount point: systemd-gpt-auto-generator mounts the ESP here, which
# systemd-bless-boot needs to mark the booted entry good.
mkdir -p "$root/efi"
chroot "$root" systemctl enable nftables.service gateway.service

# Read-only root: the data partition holds /var/lib/gateway; the journal stays
# in RAM; an empty machine-id makes systemd use a transient one.
# (The rest of /var, /etc/gateway site config, SSH host keys: not solved yet.)
echo 'PARTLABEL=data  /var/lib/gateway  ext4  defaults,nodev,nosuid,noexec  0  2' >"$root/etc/fstab"
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' >"$root/etc/systemd/journald.conf.d/volatile.conf"
: >"$root/etc/machine-id"
printf 'IMAGE_ID=gateway\nIMAGE_VERSION=%s\n' "$MKIMAGE_VERSION" >>"$root/usr/lib/os-release"

# The initramfs must be able to mount a squashfs root.
echo squashfs >>"$root/etc/initramfs-tools/modules"
chroot "$root" update-initramfs -u -k all

# Hand the kernel, initrd and boot loader to the ESP step.
cp -L "$root"/boot/vmlinuz-* "$MKIMAGE_BOOT/vmlinuz"
cp -L "$root"/boot/initrd.img-* "$MKIMAGE_BOOT/initrd.img"
cp "$root/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$MKIMAGE_BOOT/"
HOOK
    chmod +x "$hook"
    mkdir -p "$work/boot"

    MKIMAGE_UID=$gateway_uid MKIMAGE_GATEWAY_BIN=$gateway_bin MKIMAGE_HERE=$here \
        MKIMAGE_VERSION=$version MKIMAGE_BOOT=$work/boot \
        mmdebstrap \
        --mode=unshare \
        --variant=minbase \
        --format=squashfs \
        --include=systemd,systemd-sysv,systemd-boot,udev,dbus,linux-image-amd64,initramfs-tools,nftables,wireguard-tools,openssh-server,systemd-timesyncd,iproute2,ca-certificates \
        --customize-hook="$hook" \
        bookworm "$work/rootfs.squashfs" ${MIRROR:+"$MIRROR"}

    local size
    size=$(stat -c %s "$work/rootfs.squashfs")
    ((size <= root_mib * 1024 * 1024)) || die "rootfs is $size bytes; root slots are ${root_mib} MiB"
}

# Step 2: EFI system partition (FAT, built with mtools, no mount): systemd-boot,
# one kernel + initrd per slot, and one boot-counted entry per slot. Both slots
# start with the same image so fallback works from the first boot.
build_esp() {
    local esp=$work/esp.img slot
    mkfs.vfat -F 32 -n ESP -C "$esp" $((esp_mib * 1024)) >/dev/null
    mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/EFI/systemd ::/loader ::/loader/entries ::/a ::/b
    mcopy -i "$esp" "$work/boot/systemd-bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
    mcopy -i "$esp" "$work/boot/systemd-bootx64.efi" ::/EFI/systemd/systemd-bootx64.efi

    # No "default": in bookworm's systemd-boot an explicit default can pick an
    # entry already marked bad; without it, bad entries sort last.
    printf 'timeout 0\neditor no\n' >"$work/loader.conf"
    mcopy -i "$esp" "$work/loader.conf" ::/loader/loader.conf

    for slot in a b; do
        mcopy -i "$esp" "$work/boot/vmlinuz" "::/$slot/vmlinuz"
        mcopy -i "$esp" "$work/boot/initrd.img" "::/$slot/initrd.img"
        # "+N" in the name is the boot counter: systemd-boot counts attempts
        # down, systemd-bless-boot drops the counter after a good boot.
        cat >"$work/entry-$slot.conf" <<EOF
title    HL7 gateway ($slot)
version  $version
sort-key gateway
linux    /$slot/vmlinuz
initrd   /$slot/initrd.img
options  root=PARTLABEL=rootfs-$slot rootfstype=squashfs ro panic=10 quiet
EOF
        mcopy -i "$esp" "$work/entry-$slot.conf" "::/loader/entries/gateway-$slot+$boot_tries.conf"
    done
}

# Step 3: data partition (ext4, empty; systemd's StateDirectory= chowns it).
build_data() {
    truncate -s "${data_mib}M" "$work/data.img"
    mkfs.ext4 -q -F -L data "$work/data.img"
}

# Step 4: GPT disk with fixed, MiB-aligned offsets, then copy each partition in.
assemble_disk() {
    local disk=$1
    local esp_at=1
    local a_at=$((esp_at + esp_mib))
    local b_at=$((a_at + root_mib))
    local data_at=$((b_at + root_mib))
    local total=$((data_at + data_mib + 1)) # + room for the backup GPT

    rm -f "$disk"
    truncate -s "${total}M" "$disk"
    sfdisk --quiet "$disk" <<EOF
label: gpt
start=${esp_at}MiB,  size=${esp_mib}MiB,  type=$type_esp,         name="esp"
start=${a_at}MiB,    size=${root_mib}MiB, type=$type_root_x86_64, name="rootfs-a"
start=${b_at}MiB,    size=${root_mib}MiB, type=$type_root_x86_64, name="rootfs-b"
start=${data_at}MiB, size=${data_mib}MiB, type=$type_linux_data,  name="data"
EOF
    put "$work/esp.img" "$disk" "$esp_at"
    put "$work/rootfs.squashfs" "$disk" "$a_at"
    put "$work/rootfs.squashfs" "$disk" "$b_at"
    put "$work/data.img" "$disk" "$data_at"
}

# put FILE DISK OFFSET_MIB
put() {
    dd if="$1" of="$2" bs=1M seek="$3" conv=notrunc,sparse status=none
}

main() {
    local out=${1:-$repo/target/image}
    check_tools
    gateway_bin=${GATEWAY_BIN:-$repo/target/release/gateway}
    [[ -x $gateway_bin ]] || die "no gateway binary at $gateway_bin (cargo build --release -p gateway, or set GATEWAY_BIN)"
    version=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo dev)

    mkdir -p "$out"
    work=$(mktemp -d "$out/work.XXXXXX")
    trap 'rm -rf "$work"' EXIT

    build_rootfs
    build_esp
    build_data
    assemble_disk "$out/gateway-$version.img"
    echo "mkimage: wrote $out/gateway-$version.img (untested recipe: boot it in a VM before trusting it)"
}

# Sourcing the file (to try one step by hand) defines the functions only.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
