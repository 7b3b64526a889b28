/* tests/view/http_png.h — what the view tests share: a plain HTTP/1.0 GET to the server under
 * test on 127.0.0.1, and decoding the PNG or JPEG it answers with (libvips). */
#ifndef MP_TEST_HTTP_PNG_H
#define MP_TEST_HTTP_PNG_H

#include <stddef.h>
#include <stdint.h>

/* GET path from 127.0.0.1:port: the status (-1: no connection or no answer); *body malloc'd and
 * NUL-terminated, *len bytes (empty on failure); *thumb (NULL: not asked) = 1 when the answer came with
 * X-Magpie-Tile: thumbnail. */
int http_get(int port, const char *path, unsigned char **body, size_t *len, int *thumb);

/* The image in data (PNG or JPEG) as interleaved 8-bit pixels, g_free'd by the caller; NULL when
 * it does not decode. */
uint8_t *image_decode(const unsigned char *data, size_t len, int *w, int *h, int *bands);

#endif
