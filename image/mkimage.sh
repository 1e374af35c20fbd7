#!/usr/bin/env bash
# Build the appliance disk image (design and first-boot behaviour: image/README.md):
#   1. base root filesystem: Debian bookworm by mmdebstrap, cached under
#      MKIMAGE_CACHE/base-<hash of this step> (the slow, network-bound part, ~3 min);
#   2. the appliance root: base + image/rootfs + units + gateway binary + config/appliance.toml,
#      packed as a zstd squashfs (seconds);
#   3. the ESP: systemd-boot and one boot-counted entry per slot;
#   4. the data partition: empty ext4, grown to the disk at first boot;
#   5. a GPT disk:  esp | rootfs-a | rootfs-b | data.
#
# Usage: image/mkimage.sh [OUTPUT_DIR]          (default: target/image)
#   GATEWAY_BIN    gateway binary (default: target/release/gateway; cargo build --release -p gateway)
#   BUILD_NUMBER   last part of the image version (default: the number of commits in HEAD)
#   MIRROR         Debian mirror URL (default: mmdebstrap's choice)
#   MKIMAGE_CACHE  where the base root filesystem is cached (default: OUTPUT_DIR/cache)
#   MKIMAGE_PROVISION_KEYS  folder of the provisioning public keys (*.pub) to ship (default:
#                  image/provision-keys, development keys whose secrets are in tests/provision-keys)
#   UPDATE_KEYRING the update trust root to ship (/usr/share/gateway/update-keyring; made with
#                  `gateway update sign-keyring`, docs/UPDATES.md). Unset: none, and the box
#                  refuses every update bundle.
#   MKIMAGE_UPDATE_ROOTS="V [V:broken] …"
#                  also write OUTPUT_DIR/root-V.sqfs per version V (to bundle as updates;
#                  ":broken": its gateway cannot start), for scripts/image-test.
#   MKIMAGE_CMDLINE_EXTRA  more kernel command line for both slots (scripts/image-test passes
#                  systemd.journald.forward_to_console=1 with IMAGE_TEST_JOURNAL_CONSOLE=1)
#   MKIMAGE_TEST_BROKEN_B=1
#                  for scripts/image-test only: slot b gets a newer version whose gateway
#                  cannot start, to prove the fallback to slot a.
# Writes OUTPUT_DIR/gateway-<version>.img and points OUTPUT_DIR/gateway.img at it.
# Runs as root (mmdebstrap --mode=root; the squashfs keeps owners and modes).

set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

# Disk layout, in MiB. data is small in the image and grown to the disk at first boot.
esp_mib=256
root_mib=1024
data_mib=256
boot_tries=3    # failed boots of a slot before systemd-boot falls back to the other
gateway_uid=950 # fixed: /var/lib/gateway (data partition) outlives A/B swaps

type_esp=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
type_root_x86_64=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709 # amd64 only for now
type_linux_data=0FC63DAF-8483-4772-8E79-3D69D8477DE4

packages=busybox,systemd,systemd-sysv,systemd-boot,systemd-resolved,systemd-timesyncd,udev,dbus,linux-image-amd64,initramfs-tools,nftables,wireguard-tools,openssh-server,iproute2,ca-certificates

die() {
    echo "mkimage: $*" >&2
    exit 1
}

check_tools() {
    local tool missing=()
    for tool in mmdebstrap mksquashfs sfdisk mkfs.vfat mmd mcopy mkfs.ext4 truncate dd git systemctl; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]}
On Debian: apt-get install mmdebstrap squashfs-tools fdisk dosfstools mtools e2fsprogs git systemd"
    ((EUID == 0)) || die "run as root (mmdebstrap --mode=root; the root filesystem keeps its owners)"
}

# The image version: image/VERSION (major.minor) and a build number that only grows, so that
# systemd-boot (which orders entries by version) and the updater can compare versions.
image_version() {
    local build=${BUILD_NUMBER:-$(git -C "$repo" rev-list --count HEAD 2>/dev/null || echo 0)}
    echo "$(tr -d '[:space:]' <"$here/VERSION").$build"
}

# Step 1: the Debian base, cached. Only what does not depend on the gateway goes here.
base_hook() {
    cat <<'HOOK'
#!/bin/sh
set -eu
root=$1
chroot "$root" groupadd --system --gid "$MKIMAGE_UID" gateway
chroot "$root" useradd --system --uid "$MKIMAGE_UID" --gid gateway \
    --home-dir /var/lib/gateway --no-create-home --shell /usr/sbin/nologin gateway
# Host keys are made per box at first start (image/rootfs/etc/ssh), never shipped.
rm -f "$root"/etc/ssh/ssh_host_*
# An empty machine-id, made stable by the initramfs (image/initramfs/machine-id).
: >"$root/etc/machine-id"
install -D -m 0755 "$MKIMAGE_INITRAMFS/machine-id" "$root/etc/initramfs-tools/scripts/local-bottom/machine-id"
# The initramfs must mount a squashfs root.
echo squashfs >>"$root/etc/initramfs-tools/modules"
chroot "$root" update-initramfs -u -k all
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*
mkdir -p "$MKIMAGE_BOOT"
cp -L "$root"/boot/vmlinuz-* "$MKIMAGE_BOOT/vmlinuz"
cp -L "$root"/boot/initrd.img-* "$MKIMAGE_BOOT/initrd.img"
cp "$root/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$MKIMAGE_BOOT/"
HOOK
}

build_base() {
    local key
    key=$( (base_hook; echo "$packages $gateway_uid"; cat "$here"/initramfs/*) | sha256sum | cut -c1-16)
    base=${MKIMAGE_CACHE:-$out/cache}/base-$key
    if [[ -f $base/done ]]; then
        echo "mkimage: base root filesystem from the cache ($base)"
        return
    fi
    rm -rf "$base"
    mkdir -p "$base"
    base_hook >"$base/hook.sh"
    chmod +x "$base/hook.sh"
    echo "mkimage: building the base root filesystem (mmdebstrap)"
    MKIMAGE_UID=$gateway_uid MKIMAGE_BOOT=$base/boot MKIMAGE_INITRAMFS=$here/initramfs \
        mmdebstrap --mode=root --variant=minbase --include="$packages" \
        --customize-hook="$base/hook.sh" \
        bookworm "$base/root" ${MIRROR:+"$MIRROR"}
    touch "$base/done"
}

# Step 2: the appliance root filesystem from the base. $1: squashfs to write, $2: gateway binary.
build_root() {
    local sqfs=$1 bin=$2 root=$work/root
    rm -rf "$root"
    cp -a "$base/root" "$root"
    cp -a "$here/rootfs/." "$root/"
    install -m 0755 "$bin" "$root/usr/bin/gateway"
    install -m 0644 "$here"/systemd/*.service "$here"/systemd/*.timer "$root/usr/lib/systemd/system/"
    install -m 0644 "$here/nftables.conf" "$root/etc/nftables.conf"
    install -d -m 0755 "$root/etc/gateway" "$root/etc/gateway/maps"
    install -m 0644 "$repo/config/appliance.toml" "$root/etc/gateway/gateway.toml"
    install -m 0644 "$repo"/config/maps/* "$root/etc/gateway/maps/"
    install -D -m 0644 "$here/README.md" "$root/usr/share/doc/gateway/README.md"
    # The provisioning keys a stick must be signed by (a threshold of them; README,
    # "Provision a box"). The repository's are development keys: a production build passes
    # its own folder of *.pub files.
    install -d -m 0755 "$root/usr/share/gateway/provision-keys"
    install -m 0644 "${MKIMAGE_PROVISION_KEYS:-$here/provision-keys}"/*.pub "$root/usr/share/gateway/provision-keys/"
    if [[ -n ${UPDATE_KEYRING:-} ]]; then
        install -D -m 0644 "$UPDATE_KEYRING" "$root/usr/share/gateway/update-keyring"
    fi
    # Mount point of the ESP (systemd-gpt-auto-generator), where systemd-bless-boot marks
    # the booted entry good.
    install -d -m 0755 "$root/efi"
    printf 'IMAGE_ID=gateway\nIMAGE_VERSION=%s\n' "$version" >>"$root/usr/lib/os-release"

    systemctl --root="$root" --quiet enable gateway.service gateway-health.service nftables.service \
        gateway-network.service gateway-wg-dump.timer \
        gateway-update-boot-check.service gateway-update-confirm.service gateway-update-disk.service \
        systemd-networkd.service systemd-resolved.service systemd-timesyncd.service
    # SSH off by default; no package updates on a read-only root (updates are whole images).
    systemctl --root="$root" --quiet disable ssh.service
    systemctl --root="$root" --quiet mask apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer
    # The serial console shows the kernel and systemd at every boot, with no login on it (no
    # account has a password): a getty there would also stop systemd's status output on it.
    systemctl --root="$root" --quiet mask serial-getty@ttyS0.service

    mksquashfs "$root" "$sqfs" -comp zstd -Xcompression-level 6 -no-xattrs -noappend -quiet -no-progress >/dev/null
    local size
    size=$(stat -c %s "$sqfs")
    ((size <= root_mib * 1024 * 1024)) || die "root filesystem is $size bytes; root slots are $root_mib MiB"
}

# Step 3: the EFI system partition (FAT, by mtools, no mount): systemd-boot, a kernel and
# initrd per slot, and one boot-counted entry per slot. $1: slot b's version.
build_esp() {
    local version_b=$1 esp=$work/esp.img slot v title
    mkfs.vfat -F 32 -n ESP -C "$esp" $((esp_mib * 1024)) >/dev/null
    mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/EFI/systemd ::/loader ::/loader/entries ::/a ::/b
    mcopy -i "$esp" "$base/boot/systemd-bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
    mcopy -i "$esp" "$base/boot/systemd-bootx64.efi" ::/EFI/systemd/systemd-bootx64.efi
    # No "default": bookworm's systemd-boot could then pick an entry already marked bad;
    # without it the newest version with tries left boots, bad entries sort last.
    printf 'timeout 0\neditor no\n' >"$work/loader.conf"
    mcopy -i "$esp" "$work/loader.conf" ::/loader/loader.conf
    for slot in a b; do
        v=$version
        title="HL7 gateway $v ($slot)"
        if [[ $slot == b ]]; then
            v=$version_b
            [[ $v == "$version" ]] || title="HL7 gateway $v ($slot, test: cannot start)"
        fi
        mcopy -i "$esp" "$base/boot/vmlinuz" "::/$slot/vmlinuz"
        mcopy -i "$esp" "$base/boot/initrd.img" "::/$slot/initrd.img"
        cat >"$work/entry.conf" <<EOF
title    $title
version  $v
sort-key gateway
linux    /$slot/vmlinuz
initrd   /$slot/initrd.img
options  root=PARTLABEL=rootfs-$slot rootfstype=squashfs ro panic=10 console=tty0 console=ttyS0,115200${MKIMAGE_CMDLINE_EXTRA:+ $MKIMAGE_CMDLINE_EXTRA}
EOF
        # "+N" is the boot counter: systemd-boot counts tries down, systemd-bless-boot drops
        # it once boot-complete.target (and so gateway-health.service) is reached.
        mcopy -i "$esp" "$work/entry.conf" "::/loader/entries/gateway-$v-$slot+$boot_tries.conf"
    done
}

# Step 4: the data partition: empty ext4 (systemd-tmpfiles and StateDirectory= fill it).
build_data() {
    truncate -s "${data_mib}M" "$work/data.img"
    mkfs.ext4 -q -F -L data "$work/data.img"
}

# Step 5: a GPT disk with fixed, MiB-aligned partitions. $1: disk, $2/$3: slot a/b squashfs.
assemble_disk() {
    local disk=$1 esp_at=1
    local a_at=$((esp_at + esp_mib))
    local b_at=$((a_at + root_mib))
    local data_at=$((b_at + root_mib))
    rm -f "$disk"
    truncate -s "$((data_at + data_mib + 1))M" "$disk" # + room for the backup GPT
    sfdisk --quiet "$disk" <<EOF
label: gpt
start=${esp_at}MiB,  size=${esp_mib}MiB,  type=$type_esp,         name="esp"
start=${a_at}MiB,    size=${root_mib}MiB, type=$type_root_x86_64, name="rootfs-a"
start=${b_at}MiB,    size=${root_mib}MiB, type=$type_root_x86_64, name="rootfs-b"
start=${data_at}MiB, size=${data_mib}MiB, type=$type_linux_data,  name="data"
EOF
    put "$work/esp.img" "$disk" "$esp_at"
    put "$2" "$disk" "$a_at"
    put "$3" "$disk" "$b_at"
    put "$work/data.img" "$disk" "$data_at"
}

# put FILE DISK OFFSET_MIB
put() {
    dd if="$1" of="$2" bs=1M seek="$3" conv=notrunc,sparse status=none
}

main() {
    out=${1:-$repo/target/image}
    check_tools
    local bin=${GATEWAY_BIN:-$repo/target/release/gateway}
    [[ -x $bin ]] || die "no gateway binary at $bin (cargo build --release -p gateway, or set GATEWAY_BIN)"
    version=$(image_version)
    mkdir -p "$out"
    out=$(cd "$out" && pwd)
    work=$(mktemp -d "$out/work.XXXXXX")
    trap 'rm -rf "$work"' EXIT

    build_base
    strip -o "$work/gateway" "$bin"
    build_root "$work/root-a.sqfs" "$work/gateway"
    local root_b=$work/root-a.sqfs version_b=$version
    # A gateway that exits at once: the health gate fails every try.
    printf '#!/bin/sh\necho "gateway: test build that cannot start" >&2\nexit 1\n' >"$work/broken"
    chmod +x "$work/broken"
    if [[ ${MKIMAGE_TEST_BROKEN_B:-} == 1 ]]; then
        # Newer than slot a.
        version_b=${version%.*}.$((${version##*.} + 1))
        root_b=$work/root-b.sqfs
        version=$version_b build_root "$root_b" "$work/broken"
    fi
    local extra
    for extra in ${MKIMAGE_UPDATE_ROOTS:-}; do
        if [[ $extra == *:broken ]]; then
            version=${extra%:broken} build_root "$out/root-${extra%:broken}.sqfs" "$work/broken"
        else
            version=$extra build_root "$out/root-$extra.sqfs" "$work/gateway"
        fi
    done
    build_esp "$version_b"
    build_data
    assemble_disk "$out/gateway-$version.img" "$work/root-a.sqfs" "$root_b"
    ln -sfn "gateway-$version.img" "$out/gateway.img"
    echo "mkimage: wrote $out/gateway-$version.img (slot a $version, slot b $version_b)"
}

# Sourcing the file (to try one step by hand) defines the functions only.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
