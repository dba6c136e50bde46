#!/usr/bin/env bash
# Assembles the runtime root filesystem of skiff's container image (distroless-style) in DEST,
# inside the Dockerfile's Debian build stage:
#
#   rootfs.sh DEST
#
# - the Debian packages skiff needs at run time, fetched with apt-get download and unpacked
#   with dpkg --extract (no maintainer scripts run, so no shell is needed or shipped): glibc
#   (libc6), ca-certificates, base-files (os-release) and
#   netbase (/etc/services, /etc/protocols);
# - for each package its control paragraph with "Status: install ok installed" as
#   /var/lib/dpkg/status.d/<package> and its file list as <package>.md5sums, the layout of
#   distroless images, so image scanners see the packages and their versions;
# - the CA bundle /etc/ssl/certs/ca-certificates.crt (what ca-certificates' maintainer script
#   would generate: copied from the build stage, where the same version is installed), also
#   at OpenSSL's default /usr/lib/ssl/cert.pem;
# - /etc/passwd, /etc/group with root and nonroot (uid/gid 65532), /etc/nsswitch.conf, /tmp;
# - documentation, manual pages, locales and glibc's gconv modules removed (copyright files
#   kept; skiff converts no character sets), and base-files' shell start-up files.
# The skiff binary itself is added by the Dockerfile.
set -euo pipefail

dest=${1:?usage: rootfs.sh DEST}
packages=(libc6 ca-certificates base-files netbase)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$dest/var/lib/dpkg/status.d"
(cd "$work" && apt-get -qq -o APT::Sandbox::User=root download "${packages[@]}")
for deb in "$work"/*.deb; do
  name=$(dpkg-deb --field "$deb" Package)
  dpkg-deb --field "$deb" | sed '/^Package:/a Status: install ok installed' \
    >"$dest/var/lib/dpkg/status.d/$name"
  dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./md5sums >"$dest/var/lib/dpkg/status.d/$name.md5sums"
  dpkg --extract "$deb" "$dest"
done

install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$dest/etc/ssl/certs/ca-certificates.crt"
# OpenSSL's default locations (OPENSSLDIR /usr/lib/ssl), as Debian's openssl package links them.
install -d "$dest/usr/lib/ssl"
ln -sfn /etc/ssl/certs "$dest/usr/lib/ssl/certs"
ln -sfn /etc/ssl/certs/ca-certificates.crt "$dest/usr/lib/ssl/cert.pem"

printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
  'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
  'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$dest/etc/passwd"
printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' 'nonroot:x:65532:' >"$dest/etc/group"
printf '%s\n' 'passwd: files' 'group: files' 'shadow: files' 'hosts: files dns' \
  'networks: files' 'protocols: files' 'services: files' >"$dest/etc/nsswitch.conf"
install -d -m 1777 "$dest/tmp"
install -d -m 0700 "$dest/root"

rm -rf "$dest/usr/share/man" "$dest/usr/share/info" "$dest/usr/share/lintian" \
  "$dest/usr/share/locale" "$dest/usr/lib/x86_64-linux-gnu/gconv" \
  "$dest/etc/update-motd.d" "$dest/etc/profile.d" "$dest/etc/skel"
find "$dest/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
find "$dest/usr/share/doc" -mindepth 1 -type d -empty -delete

# Nothing that runs commands: no shell, no interpreter.
for f in bin/sh bin/bash bin/dash usr/bin/sh usr/bin/bash usr/bin/dash bin/busybox; do
  [ ! -e "$dest/$f" ] || { echo "rootfs.sh: $f in the runtime image" >&2; exit 1; }
done
