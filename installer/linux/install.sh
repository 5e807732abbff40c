#!/bin/sh
# Install CXR Screener from the extracted tar.gz.
#
#   ./install.sh             for the current user (no root needed):
#                              ~/.local/opt/cxr-screener/        the application
#                              ~/.local/bin/cxr-screener         command-line launcher
#                              ~/.local/share/applications/      menu entry (.desktop)
#                              ~/.local/share/icons/hicolor/     icon
#   sudo ./install.sh --system   for all users: /opt/cxr-screener, /usr/local/bin,
#                                /usr/local/share/applications, /usr/local/share/icons
#   ./install.sh --prefix DIR    install the application into DIR instead
#
# Remove it again with uninstall.sh (copied next to the application).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
MODE=user
APPDIR=
while [ $# -gt 0 ]; do
    case "$1" in
        --system) MODE=system ;;
        --user) MODE=user ;;
        --prefix) shift; APPDIR=${1:?--prefix needs a folder} ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
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

if [ ! -x "$HERE/CXRScreener/CXRScreener" ]; then
    echo "install.sh: $HERE/CXRScreener/CXRScreener not found: run me from the extracted archive" >&2
    exit 1
fi

echo "Installing CXR Screener into $APPDIR"
if [ -e "$APPDIR" ]; then
    # Replace a previous version; never touch the user's data (~/.local/share/cxr-screener).
    rm -rf "$APPDIR.old"
    mv "$APPDIR" "$APPDIR.old"
fi
mkdir -p "$(dirname "$APPDIR")"
cp -a "$HERE/CXRScreener" "$APPDIR"
cp "$HERE/uninstall.sh" "$APPDIR/uninstall.sh"
chmod 755 "$APPDIR/uninstall.sh"
rm -rf "$APPDIR.old"

mkdir -p "$BINDIR"
ln -sf "$APPDIR/CXRScreener" "$BINDIR/cxr-screener"

mkdir -p "$SHARE/applications"
sed "s|@APPDIR@|$APPDIR|g" "$HERE/cxr-screener.desktop" > "$SHARE/applications/cxr-screener.desktop"
chmod 644 "$SHARE/applications/cxr-screener.desktop"

if [ -f "$HERE/cxr-screener.png" ]; then
    mkdir -p "$SHARE/icons/hicolor/256x256/apps"
    cp "$HERE/cxr-screener.png" "$SHARE/icons/hicolor/256x256/apps/cxr-screener.png"
    command -v gtk-update-icon-cache >/dev/null 2>&1 \
        && gtk-update-icon-cache -q -t "$SHARE/icons/hicolor" 2>/dev/null || true
else
    echo "note: no icon in the archive; the menu entry uses a generic icon"
fi
command -v update-desktop-database >/dev/null 2>&1 \
    && update-desktop-database -q "$SHARE/applications" 2>/dev/null || true

# Qt needs a few system libraries on a desktop; say which ones are missing.
missing=$(for lib in "$APPDIR"/_internal/PySide6/Qt/plugins/platforms/libqxcb.so \
                     "$APPDIR"/_internal/PySide6/Qt/lib/libQt6XcbQpa.so.6; do
              [ -e "$lib" ] && LD_LIBRARY_PATH="$APPDIR/_internal:$APPDIR/_internal/PySide6/Qt/lib" \
                  ldd "$lib" 2>/dev/null | awk '/not found/ {print $1}'
          done | sort -u)
if [ -n "$missing" ]; then
    echo
    echo "WARNING: these system libraries are missing, the window will not open until they are installed:"
    echo "$missing" | sed 's/^/    /'
    echo "Debian/Ubuntu: sudo apt install libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 \\"
    echo "    libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-shape0 libegl1 libgl1 libfontconfig1 libdbus-1-3"
    echo "Fedora: sudo dnf install xcb-util-cursor libxkbcommon-x11 xcb-util-wm xcb-util-image \\"
    echo "    xcb-util-keysyms xcb-util-renderutil mesa-libEGL mesa-libGL fontconfig"
    echo "(See INSTALL.md.)"
fi

echo
echo "Done. Start \"CXR Screener\" from the applications menu, or run:"
echo "    $APPDIR/CXRScreener                 (the window)"
echo "    $APPDIR/CXRScreener selftest        (check the models and decoders)"
case ":$PATH:" in
    *":$BINDIR:"*) echo "    cxr-screener predict FILE...        (command line)" ;;
    *) echo "    $BINDIR/cxr-screener predict FILE...  (add $BINDIR to PATH for 'cxr-screener')" ;;
esac
echo "Uninstall: $APPDIR/uninstall.sh$( [ "$MODE" = system ] && echo ' --system')"
