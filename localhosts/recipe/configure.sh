#!/bin/bash
# Runs once inside the freshly debootstrapped template (chroot, /proc mounted). It makes the image look like
# a Debian EC2 AMI after cloud-init ran, plus what a first Capistrano deploy of the example app leaves behind.
# Inputs: $ADMIN_PUBKEY (authorized for admin and deploy), $APP_ROOT, $RELEASE, $SIDEKIQ_VERSION, $DISTRO,
# and the app's files in $RECIPE/app, with this distro's own (its Gemfile) in $RECIPE/distros/$DISTRO/app.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
: "${ADMIN_PUBKEY:?}" "${APP_ROOT:?}" "${RELEASE:?}" "${SIDEKIQ_VERSION:?}" "${DISTRO:?}" "${RECIPE:?}"

authorize() { # user: install the harness key as the user's only authorized key
    local user=$1 home
    home=$(getent passwd "$user" | cut -d: -f6)
    install -d -m 0700 -o "$user" -g "$user" "$home/.ssh"
    printf '%s\n' "$ADMIN_PUBKEY" >"$home/.ssh/authorized_keys"
    chown "$user:$user" "$home/.ssh/authorized_keys"
    chmod 0600 "$home/.ssh/authorized_keys"
}

# --- admin: cloud-init's default user on Debian images, with cloud-init's groups where they exist.
groups=()
for g in adm audio cdrom dialout dip floppy netdev plugdev sudo video; do
    getent group "$g" >/dev/null && groups+=("$g")
done
useradd --create-home --shell /bin/bash --groups "$(IFS=,; echo "${groups[*]}")" admin
authorize admin
cat >/etc/sudoers.d/90-cloud-init-users <<'SUDO'
# Created by the sidekiq-fleet localhosts harness, as cloud-init does on Debian images

# User rules for admin
admin ALL=(ALL) NOPASSWD:ALL
SUDO
chmod 0440 /etc/sudoers.d/90-cloud-init-users
visudo -cf /etc/sudoers.d/90-cloud-init-users >/dev/null

# --- deploy: owns the app and gets no sudo here; the Pulumi program installs its least-privilege drop-in.
useradd --create-home --home-dir /home/deploy --shell /bin/bash --groups redis deploy
authorize deploy

# --- sshd as on Debian cloud images: keys only. Host keys are made per host, never shared via the template.
printf 'PasswordAuthentication no\n' >/etc/ssh/sshd_config.d/50-cloud-init.conf
rm -f /etc/ssh/ssh_host_*

# --- Redis answers only on loopback (Debian's default; pinned so an upstream change cannot widen it).
sed -ri 's/^bind .*/bind 127.0.0.1 -::1/' /etc/redis/redis.conf
grep -q '^bind ' /etc/redis/redis.conf || echo 'bind 127.0.0.1 -::1' >>/etc/redis/redis.conf
if [ "$(grep -c '^bind ' /etc/redis/redis.conf)" != 1 ] || ! grep -qx 'bind 127.0.0.1 -::1' /etc/redis/redis.conf; then
    echo "could not pin Redis to loopback" >&2; exit 1
fi
# And on a unix socket for the redis group, as many single-host setups use it.
printf 'unixsocket /run/redis/redis-server.sock\nunixsocketperm 770\n' >>/etc/redis/redis.conf

systemctl enable systemd-networkd.service ssh.service redis-server.service

# --- identity is per host: empty machine-id (systemd-machine-id-setup fills it per host), generic hostname.
: >/etc/machine-id
ln -sf /etc/machine-id /var/lib/dbus/machine-id
echo localhost >/etc/hostname
cat >/etc/hosts <<'HOSTS'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
HOSTS
# The hosts have no DNS server to reach; an unreachable one only adds timeouts.
: >/etc/resolv.conf
printf 'LANG=C.UTF-8\n' >/etc/default/locale

# --- the app, laid out as Capistrano leaves it.
release="$APP_ROOT/releases/$RELEASE"
install -d "$release" "$APP_ROOT/shared/log" "$APP_ROOT/shared/tmp"
cp -a "$RECIPE/app/." "$release/"
cp -a "$RECIPE/distros/$DISTRO/app/." "$release/"
# Capistrano's linked_dirs: the release's log/ and tmp/ are links into shared/.
ln -s "$APP_ROOT/shared/log" "$release/log"
ln -s "$APP_ROOT/shared/tmp" "$release/tmp"
ln -sfn "$release" "$APP_ROOT/current"
printf 'Branch main (at 0000000) deployed as release %s by deploy\n' "$RELEASE" >"$APP_ROOT/revisions.log"
chown -R deploy:deploy "${APP_ROOT%/*}"

as_deploy() { setpriv --reuid=deploy --regid=deploy --init-groups env -i HOME=/home/deploy USER=deploy \
    PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 "$@"; }
# The lockfile pins what Debian ships, so `bundle exec` resolves offline against the system gems.
(cd "$release" && as_deploy bundle lock --local >/dev/null)
got=$(cd "$release" && as_deploy bundle exec ruby -e 'require "sidekiq"; print Sidekiq::VERSION')
[ "$got" = "$SIDEKIQ_VERSION" ] || { echo "bundle exec loads Sidekiq $got, want $SIDEKIQ_VERSION" >&2; exit 1; }
if dpkg-query -W cloud-init >/dev/null 2>&1; then echo "cloud-init must not be in the template" >&2; exit 1; fi

apt-get clean
rm -rf /var/lib/apt/lists/* /var/log/apt/* /var/cache/debconf/*-old
