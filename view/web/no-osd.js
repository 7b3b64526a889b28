// Stand-in for OpenSeadragon when the build did not find it (view/meson.build).
window.MAGPIE_NO_OSD = "OpenSeadragon was not built into this magpie: run `sh tools/fetch-openseadragon.sh` (npm) in the source tree, then rebuild (ninja -C build).";
