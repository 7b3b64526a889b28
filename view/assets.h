/* view/assets.h — files embedded into the binary at build time (tools/embed_assets.py): the
 * page, its script and style, and OpenSeadragon, so `magpie view` needs nothing beside it. */
#ifndef MP_VIEW_ASSETS_H
#define MP_VIEW_ASSETS_H

#include <stddef.h>

typedef struct {
    const char *url;   /* "/view.js" */
    const char *mime;
    const unsigned char *data;
    size_t len;
} view_asset;

extern const view_asset view_assets[]; /* ends with url == NULL */

#endif
