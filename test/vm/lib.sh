#!/usr/bin/env bash
# Helpers for fe's VM test (test/vm/run.sh): the Debian mirror this machine's apt uses, a
# Debian 12 root built with debootstrap, disk images made without loop devices, a QEMU guest
# (TCG: this machine's /dev/kvm opens, but a guest kernel stalls in its decompressor; a USB
# controller with a tablet, as a VPS has for its console) on a user
# network that cannot reach anything (restrict=on) with forwarded ports on 127.0.0.1, and ssh
# into it with a key made for the run.
#
# No host names and no paths of any particular machine are written here: the mirror comes
# from apt's configuration at run time, temporary files from mktemp, ports from the kernel.
#
# Guest-side scripts are single-quoted on purpose: they expand in the guest.
# shellcheck disable=SC2016

VM_SUITE=${VM_SUITE:-bookworm}
VM_MEM=${VM_MEM:-1024}
VM_CPUS=${VM_CPUS:-2}
VM_BOOT_TIMEOUT=${VM_BOOT_TIMEOUT:-600}
# The SSH port fe init is told to use (--ssh-port); when not 22, it is forwarded as well and the
# test moves to it once fe init has run.
VM_FE_SSH_PORT=${VM_FE_SSH_PORT:-22}

# What fe init's playbook installs with apt is installed here already: the guest has no network,
# so those apt tasks must find everything present. python3-apt is what ansible's apt module
# needs; python3-cffi-backend is named because debootstrap does not resolve virtual packages.
# lynis is not fe's: the test runs it in the guest to measure the hardening (README: Hardening).
VM_PACKAGES=systemd,systemd-sysv,udev,dbus,openssh-server,cryptsetup,iptables,python3,ansible-core,python3-cffi-backend,python3-apt,linux-image-amd64,initramfs-tools,kmod,iproute2,sudo,procps,e2fsprogs,util-linux,rsync,openssl,ca-certificates,iptables-persistent,netfilter-persistent,unattended-upgrades,auditd,debsums,apt-show-versions,libpam-pwquality,libpam-tmpdir,apt-listchanges,apparmor,usbguard,lynis

# Ubuntu (VM_SUITE=jammy or noble) needs VM_MIRROR (an Ubuntu archive URL; this machine's apt
# has none), its universe component (ansible-core, iptables-persistent) and its kernel package.
vm_is_ubuntu() { [[ $VM_SUITE == jammy || $VM_SUITE == noble ]]; }
if vm_is_ubuntu; then
  VM_PACKAGES=${VM_PACKAGES/linux-image-amd64/linux-image-virtual}
fi

VM_T0=$(date +%s)
VM_TIMINGS=()

vm_log() { printf '[%s +%4ss] %s\n' "$(date -u +%H:%M:%S)" "$(($(date +%s) - VM_T0))" "$*" >&2; }

# vm_step NAME COMMAND...: run COMMAND and record how long it took.
vm_step() {
  local name="$1" t0 rc=0
  shift
  vm_log "== $name"
  t0=$(date +%s)
  "$@" || rc=$?
  VM_TIMINGS+=("$(printf '%-28s %5ss' "$name" "$(($(date +%s) - t0))")")
  vm_log "   $name: $(($(date +%s) - t0))s$( ((rc == 0)) || echo " (rc=$rc)")"
  return "$rc"
}

vm_print_timings() {
  local line
  printf 'step timings:\n' >&2
  for line in "${VM_TIMINGS[@]}"; do printf '  %s\n' "$line" >&2; done
  printf '  %-28s %5ss\n' total "$(($(date +%s) - VM_T0))" >&2
}

# The archive URI this machine's apt uses for SUITE (deb822 *.sources or one-line *.list).
vm_apt_mirror() {
  local suite=${1:-$VM_SUITE} f
  local -a files=()
  [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] && files+=("$f")
  done
  ((${#files[@]} > 0)) || return 0
  for f in "${files[@]}"; do
    if [[ $f == *.sources ]]; then
      awk -v want="$suite" '
        function flush() {
          if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " want " ") && enabled != "no" && uris != "") {
            split(uris, u, " "); print u[1]; found = 1; exit
          }
          types = ""; suites = ""; uris = ""; enabled = ""
        }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        {
          key = tolower($1); sub(/:$/, "", key)
          val = $0; sub(/^[^:]*:[ \t]*/, "", val)
          if (key == "types") types = val
          else if (key == "uris") uris = val
          else if (key == "suites") suites = val
          else if (key == "enabled") enabled = tolower(val)
        }
        END { if (!found) flush() }
      ' "$f"
    else
      awk -v want="$suite" '
        $1 == "deb" {
          i = 2
          if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
          if ($(i + 1) == want) { print $i; exit }
        }
      ' "$f"
    fi
  done | head -n 1
}

# Host tools; installed with apt when missing (CI runs as root).
vm_host_tools() {
  local missing=() cmd
  for cmd in debootstrap qemu-system-x86_64 mkfs.ext4 ssh ssh-keygen socat swaks age; do
    command -v "$cmd" >/dev/null || missing+=("$cmd")
  done
  ((${#missing[@]} == 0)) && return 0
  vm_log "   installing host tools (missing: ${missing[*]})"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    debootstrap qemu-system-x86 qemu-utils e2fsprogs openssh-client socat swaks age >/dev/null
}

# vm_debootstrap ROOT: a minimal Debian root with VM_PACKAGES and a small initrd.
# With FE_VM_CACHE set to a directory, the result is kept there as a tar keyed by the package
# list and reused next time (a cache only: without it the test builds from scratch).
vm_debootstrap() {
  local root="$1" mirror key tarball=""
  if [[ -n ${FE_VM_CACHE:-} ]]; then
    key=$(printf '%s %s' "$VM_SUITE" "$VM_PACKAGES" | sha256sum | cut -c1-16)
    tarball="$FE_VM_CACHE/rootfs-$VM_SUITE-$key.tar"
    if [[ -f $tarball ]]; then
      vm_log "   root from the cache $tarball"
      mkdir -p "$root"
      tar -C "$root" --numeric-owner --xattrs -xf "$tarball"
      return 0
    fi
  fi
  mirror="${VM_MIRROR:-$(vm_apt_mirror "$VM_SUITE")}"
  if [[ -z $mirror ]] && vm_is_ubuntu; then
    echo "VM_SUITE=$VM_SUITE needs VM_MIRROR=<an Ubuntu archive URL>" >&2
    return 1
  fi
  if [[ -z $mirror ]]; then
    # Another release than this machine's (VM_SUITE=trixie on a Debian 12 host): a Debian mirror
    # carries every suite, so take the one apt uses for this machine's own release.
    local own
    own="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    [[ -n $own ]] && mirror="$(vm_apt_mirror "$own")"
  fi
  [[ -n $mirror ]] || { echo "no apt source for $VM_SUITE in this machine's apt configuration" >&2; return 1; }
  vm_log "   mirror: $mirror"
  local -a extra=()
  if vm_is_ubuntu; then
    extra+=("--components=main,universe")
    if [[ -f /usr/share/keyrings/ubuntu-archive-keyring.gpg ]]; then
      extra+=(--keyring=/usr/share/keyrings/ubuntu-archive-keyring.gpg)
    else
      # A Debian host without Ubuntu's archive key cannot check the Release signature.
      vm_log "   WARNING: no ubuntu-archive-keyring.gpg here: the Ubuntu packages are not signature-checked"
      extra+=(--no-check-gpg)
    fi
  fi
  # Before the kernel's package runs update-initramfs: MODULES=list and a hook with the three
  # modules this VM boots with. MODULES=most takes minutes in the chroot for a 36 MB initrd.
  mkdir -p "$root/etc/initramfs-tools/conf.d" "$root/etc/initramfs-tools/hooks"
  echo MODULES=list >"$root/etc/initramfs-tools/conf.d/fe-vm.conf"
  cat >"$root/etc/initramfs-tools/hooks/fe-vm" <<'HOOK'
#!/bin/sh
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
manual_add_modules virtio_pci virtio_blk ext4
HOOK
  chmod 755 "$root/etc/initramfs-tools/hooks/fe-vm"
  local -a script=()
  # Older debootstrap lacks newer Ubuntu suites; they all use the same script.
  if vm_is_ubuntu && [[ ! -e /usr/share/debootstrap/scripts/$VM_SUITE ]]; then script=(/usr/share/debootstrap/scripts/gutsy); fi
  if ! debootstrap --variant=minbase "${extra[@]}" --include="$VM_PACKAGES" "$VM_SUITE" "$root" "$mirror" "${script[@]}" >"$VM_WORK/debootstrap.log" 2>&1; then
    echo "debootstrap failed; its log ends:" >&2
    tail -n 30 "$VM_WORK/debootstrap.log" >&2
    return 1
  fi
  rm -f "$root"/var/cache/apt/archives/*.deb
  if [[ -n $tarball ]]; then
    mkdir -p "$FE_VM_CACHE"
    tar -C "$root" --numeric-owner --xattrs -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
  fi
}

# vm_configure ROOT PROJECT: network, ssh key, the host's Node and the project under /root/fe.
vm_configure() {
  local r="$1" project="$2"
  echo fe-vm >"$r/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 fe-vm\n' >"$r/etc/hosts"
  printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$r/etc/fstab"
  mkdir -p "$r/etc/systemd/network"
  printf '[Match]\nName=eth0\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\n' >"$r/etc/systemd/network/10-eth0.network"
  systemctl --root="$r" enable systemd-networkd.service ssh.service >/dev/null 2>&1
  # Nothing in the VM waits for the network or reaches for a mirror.
  systemctl --root="$r" mask systemd-networkd-wait-online.service apt-daily.timer \
    apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1 || true
  # The package lists are as fresh as the build: tell apt (and ansible's cache_valid_time) so,
  # the guest cannot update them anyway.
  mkdir -p "$r/var/lib/apt/periodic"
  touch "$r/var/lib/apt/periodic/update-success-stamp" "$r/var/lib/apt/lists"
  # Root on the serial console without a password: a way in when ssh does not come up.
  mkdir -p "$r/etc/systemd/system/serial-getty@ttyS0.service.d"
  printf '[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %%I $TERM\n' \
    >"$r/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf"
  ssh-keygen -q -t ed25519 -N '' -C fe-vm-test -f "$VM_KEY"
  install -d -m 700 "$r/root/.ssh"
  install -m 600 "$VM_KEY.pub" "$r/root/.ssh/authorized_keys"
  rm -f "$r"/etc/ssh/ssh_host_*
  ssh-keygen -q -A -f "$r"
  # The host's Node (Debian 12 glibc on both sides) and the project as built here.
  install -m 755 "$(command -v node)" "$r/usr/local/bin/node"
  mkdir -p "$r/root/fe"
  tar -C "$project" --exclude=./dist/test -cf - bin dist node_modules templates ansible systemd package.json LICENSE |
    tar -C "$r/root/fe" -xf -
  # A resolver on the guest's loopback (test/vm/guest-dns.ts): the guest has no network, and a
  # VPS has a resolver. It starts before anything that looks names up.
  install -d "$r/opt/fe-vm-dns/helpers" "$r/opt/fe-vm-dns/vm"
  echo '{"type":"module"}' >"$r/opt/fe-vm-dns/package.json"
  install -m 644 "$project/dist/test/helpers/dns-server.js" "$r/opt/fe-vm-dns/helpers/"
  install -m 644 "$project/dist/test/vm/guest-dns.js" "$r/opt/fe-vm-dns/vm/"
  printf '%s\n' '[Unit]' 'Description=fe VM test: DNS on 127.0.0.1:53' 'Before=nss-lookup.target' 'Wants=nss-lookup.target' \
    '[Service]' 'ExecStart=/usr/local/bin/node /opt/fe-vm-dns/vm/guest-dns.js fe-vm.test 10.0.2.15' 'Restart=always' \
    '[Install]' 'WantedBy=multi-user.target' >"$r/etc/systemd/system/fe-vm-dns.service"
  systemctl --root="$r" enable fe-vm-dns.service >/dev/null 2>&1
  rm -f "$r/etc/resolv.conf"
  echo 'nameserver 127.0.0.1' >"$r/etc/resolv.conf"
}

# vm_images ROOT: root.img (mkfs.ext4 -d: no loop device, no mount), an empty 1 GiB data disk,
# the kernel and initrd beside them.
vm_images() {
  local r="$1" kver size_mb
  kver="$(find "$r/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sort -V | tail -n 1)"
  kver="${kver#vmlinuz-}"
  [[ -n $kver && -f "$r/boot/initrd.img-$kver" ]] || { echo "no kernel/initrd in the root" >&2; return 1; }
  cp "$r/boot/vmlinuz-$kver" "$VM_WORK/vmlinuz"
  cp "$r/boot/initrd.img-$kver" "$VM_WORK/initrd.img"
  size_mb=$(($(du -sxm "$r" | cut -f1) + 1536))
  mkfs.ext4 -q -F -L fe-root -d "$r" "$VM_WORK/root.img" "${size_mb}M"
  truncate -s 1G "$VM_WORK/data.img"
  vm_log "   kernel $kver, root image ${size_mb} MiB"
}

# A free TCP port on 127.0.0.1, picked by the kernel (a small race is accepted).
vm_free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

VM_SSH_PORT=
VM_SMTP_PORT=
VM_IMAPS_PORT=
VM_SUBMISSION_PORT=
VM_HTTPS_PORT=
VM_SSH_PORT_AFTER=
vm_start() {
  local fwd_ssh=""
  VM_SSH_PORT=$(vm_free_port)
  VM_SSH_PORT_AFTER=$VM_SSH_PORT
  if [[ $VM_FE_SSH_PORT != 22 ]]; then
    VM_SSH_PORT_AFTER=$(vm_free_port)
    fwd_ssh=",hostfwd=tcp:127.0.0.1:$VM_SSH_PORT_AFTER-:$VM_FE_SSH_PORT"
  fi
  VM_SMTP_PORT=$(vm_free_port)
  VM_IMAPS_PORT=$(vm_free_port)
  VM_SUBMISSION_PORT=$(vm_free_port)
  VM_HTTPS_PORT=$(vm_free_port)
  qemu-system-x86_64 \
    -M q35 -accel tcg,thread=multi -cpu max -smp "$VM_CPUS" -m "$VM_MEM" \
    -kernel "$VM_WORK/vmlinuz" -initrd "$VM_WORK/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0,115200 net.ifnames=0 loglevel=4" \
    -drive "file=$VM_WORK/root.img,if=virtio,format=raw,cache=unsafe" \
    -drive "file=$VM_WORK/data.img,if=virtio,format=raw,cache=unsafe" \
    -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$VM_SSH_PORT-:22,hostfwd=tcp:127.0.0.1:$VM_SMTP_PORT-:25,hostfwd=tcp:127.0.0.1:$VM_IMAPS_PORT-:993,hostfwd=tcp:127.0.0.1:$VM_SUBMISSION_PORT-:587,hostfwd=tcp:127.0.0.1:$VM_HTTPS_PORT-:443$fwd_ssh" \
    -device virtio-net-pci,netdev=n0 -device virtio-rng-pci \
    -device qemu-xhci,id=xhci -device usb-tablet,bus=xhci.0 \
    -display none -serial "file:$VM_WORK/console.log" \
    -monitor "unix:$VM_WORK/monitor.sock,server,nowait" \
    -pidfile "$VM_WORK/qemu.pid" -daemonize
  vm_log "   qemu pid $(cat "$VM_WORK/qemu.pid"); 127.0.0.1: ssh $VM_SSH_PORT (after fe init $VM_SSH_PORT_AFTER), smtp $VM_SMTP_PORT, imaps $VM_IMAPS_PORT, submission $VM_SUBMISSION_PORT, https $VM_HTTPS_PORT"
}

vm_running() { [[ -f "$VM_WORK/qemu.pid" ]] && kill -0 "$(cat "$VM_WORK/qemu.pid")" 2>/dev/null; }

# vm_ssh_as USER ARGS...: one command over a control master kept per user (a key exchange
# under TCG costs seconds, and fe's firewall allows 6 new SSH connections a minute).
vm_ssh_as() {
  local user="$1"
  shift
  ssh -q -i "$VM_KEY" -p "$VM_SSH_PORT" -o BatchMode=yes -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o ConnectTimeout=20 -o ServerAliveInterval=10 -o ServerAliveCountMax=12 \
    -o ControlMaster=auto -o "ControlPath=$VM_WORK/ssh-$user.sock" -o ControlPersist=600 "$user@127.0.0.1" "$@"
}
# A fresh connection, no master: for "is this login refused".
vm_ssh_fresh() {
  local user="$1"
  shift
  ssh -q -i "$VM_KEY" -p "$VM_SSH_PORT" -o BatchMode=yes -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o ConnectTimeout=20 -o ControlMaster=no -o ControlPath=none "$user@127.0.0.1" "$@"
}
vm_ssh_close() {
  local user
  for user in "$@"; do
    ssh -q -o "ControlPath=$VM_WORK/ssh-$user.sock" -O exit -p "$VM_SSH_PORT" "$user@127.0.0.1" 2>/dev/null || true
  done
}

# vm_wait_ssh USER INTERVAL: retry until a login works (each try is a new TCP connection; after
# fe init the firewall drops the 7th new SSH connection in a minute, so then INTERVAL >= 11).
vm_wait_ssh() {
  local user="$1" interval="$2" deadline=$(($(date +%s) + VM_BOOT_TIMEOUT))
  until vm_ssh_as "$user" true 2>/dev/null; do
    vm_ssh_close "$user"
    vm_running || { echo "qemu exited" >&2; return 1; }
    (($(date +%s) < deadline)) || { echo "no ssh login as $user after ${VM_BOOT_TIMEOUT}s" >&2; return 1; }
    sleep "$interval"
  done
}

# vm_reboot USER INTERVAL: reboot in the same QEMU process, wait for a new boot_id.
vm_reboot() {
  local user="$1" interval="$2" before after
  before="$(vm_ssh_as "$user" cat /proc/sys/kernel/random/boot_id)"
  vm_ssh_as "$user" 'sudo systemctl reboot' || true
  vm_ssh_close "$user"
  sleep 10
  vm_wait_ssh "$user" "$interval" || return 1
  after="$(vm_ssh_as "$user" cat /proc/sys/kernel/random/boot_id)"
  [[ $before != "$after" ]] || { echo "boot_id unchanged: the VM did not reboot" >&2; return 1; }
}

# vm_monitor COMMAND: one command to QEMU's monitor (device_add, quit ...).
vm_monitor() { echo "$1" | socat - "UNIX-CONNECT:$VM_WORK/monitor.sock" >/dev/null 2>&1; }

# vm_stop USER: power off (through sudo when USER is not root); QEMU's monitor, then kill, if it hangs.
vm_stop() {
  local user="$1" deadline
  vm_ssh_as "$user" 'sudo systemctl poweroff' >/dev/null 2>&1 || true
  vm_ssh_close root admin
  deadline=$(($(date +%s) + 120))
  while vm_running && (($(date +%s) < deadline)); do sleep 1; done
  vm_kill
}

vm_kill() {
  if vm_running; then
    echo quit | socat - "UNIX-CONNECT:$VM_WORK/monitor.sock" >/dev/null 2>&1 || true
    sleep 2
    vm_running && kill "$(cat "$VM_WORK/qemu.pid")" 2>/dev/null
  fi
  return 0
}
