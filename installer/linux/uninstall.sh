#!/bin/sh
# Remove CXR Screener installed by install.sh.
#
#   ./uninstall.sh            the per-user installation
#   sudo ./uninstall.sh --system
#   ./uninstall.sh --prefix DIR   when it was installed with --prefix DIR
#
# Your data (settings, retrained models in ~/.local/share/cxr-screener/models, the audit
# log) is kept; delete ~/.local/share/cxr-screener yourself to remove it too.
set -eu

MODE=user
APPDIR=
while [ $# -gt 0 ]; do
    case "$1" in
        --system) MODE=system ;;
        --user) MODE=user ;;
        --prefix) shift; APPDIR=${1:?--prefix needs a folder} ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "uninstall.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$MODE" = system ]; then
    [ -n "$APPDIR" ] || APPDIR=/opt/cxr-screener
    BINDIR=/usr/local/bin
    SHARE=/usr/local/share
else
    [ -n "$APPDIR" ] || APPDIR="$HOME/.local/opt/cxr-screener"
    BINDIR="$HOME/.local/bin"
    SHARE="${XDG_DATA_HOME:-$HOME/.local/share}"
fi

if [ ! -x "$APPDIR/CXRScreener" ]; then
    echo "uninstall.sh: no CXR Screener in $APPDIR (use --system or --prefix DIR)" >&2
    exit 1
fi

# Only remove the launcher if it is ours.
if [ -L "$BINDIR/cxr-screener" ] && [ "$(readlink "$BINDIR/cxr-screener")" = "$APPDIR/CXRScreener" ]; then
    rm -f "$BINDIR/cxr-screener"
fi
rm -f "$SHARE/applications/cxr-screener.desktop"
rm -f "$SHARE/icons/hicolor/256x256/apps/cxr-screener.png"
command -v update-desktop-database >/dev/null 2>&1 \
    && update-desktop-database -q "$SHARE/applications" 2>/dev/null || true
command -v gtk-update-icon-cache >/dev/null 2>&1 \
    && gtk-update-icon-cache -q -t "$SHARE/icons/hicolor" 2>/dev/null || true
rm -rf "$APPDIR"
echo "CXR Screener removed from $APPDIR (your data in ~/.local/share/cxr-screener is kept)."
