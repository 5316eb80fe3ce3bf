#!/bin/sh
# The part every kernel image shares, run once by each plugin's Dockerfile as root:
# python3 (only when the base lacks it), /opt/venv with requirements.txt installed
# offline from /build/wheels, byte-compiled, a uid-1000 user, and the file system
# details a hardened container needs. `lessonserver images build` copies this file
# into each build context next to the plugin's Dockerfile and requirements.txt.
set -eu

# The debootstrapped base has python3, venv and bash; a stock slim image does not
# (and then needs the network for apt-get).
if ! python3 -c 'import ensurepip' 2>/dev/null; then
    apt-get update
    apt-get install -y --no-install-recommends python3 python3-venv bash
    rm -rf /var/lib/apt/lists/*
fi

python3 -m venv /opt/venv
/opt/venv/bin/pip install --no-cache-dir --no-index --find-links /build/wheels -r /build/requirements.txt

# Kernel code copied in by the Dockerfile (e.g. the SQL kernel) goes on the venv's path.
if [ -d /opt/lessonserver ]; then
    echo /opt/lessonserver >"$(/opt/venv/bin/python -c 'import site; print(site.getsitepackages()[0])')/lessonserver.pth"
fi

# Keep the .pyc files: with a read-only root, missing ones cost ~1 s at every start.
/opt/venv/bin/python -m compileall -q -j 0 /opt/venv /usr/lib/python3 /usr/lib/python3.* \
    $( [ -d /opt/lessonserver ] && echo /opt/lessonserver ) >/dev/null

# uid 1000 without useradd (minbase has no passwd package).
if ! getent passwd 1000 >/dev/null; then
    echo 'learner:x:1000:1000:learner:/home/learner:/bin/bash' >>/etc/passwd
    echo 'learner:x:1000:' >>/etc/group
fi
mkdir -p /home/learner
chown 1000:1000 /home/learner
# runc gives the tmpfs on /tmp this directory's mode.
chmod 1777 /tmp
# docker's init (tini) is mounted into /sbin, which must be a real directory,
# not merged-usr's symlink to usr/sbin.
if [ -L /sbin ]; then
    rm /sbin
    mkdir /sbin
    ln -s /usr/sbin/* /sbin/
fi
rm -rf /build /root/.cache
