/* tests/view/http_png.c — see http_png.h. */
#include "tests/view/http_png.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vips/vips.h>

int http_get(int port, const char *path, unsigned char **body, size_t *len, int *thumb)
{
    *body = calloc(1, 1); /* an empty body on failure: callers read it whatever the status */
    *len = 0;
    if (thumb) *thumb = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, req, n) != n) {
        close(fd);
        return -1;
    }
    size_t cap = 1 << 16, got = 0;
    unsigned char *buf = malloc(cap);
    ssize_t r;
    while ((r = read(fd, buf + got, cap - got)) > 0) {
        got += r;
        if (got == cap) buf = realloc(buf, cap *= 2);
    }
    close(fd);
    buf = realloc(buf, got + 1);
    buf[got] = 0;
    int status = -1;
    sscanf((char *)buf, "HTTP/1.%*d %d", &status);
    unsigned char *b = memmem(buf, got, "\r\n\r\n", 4);
    size_t off = b ? (size_t)(b + 4 - buf) : got;
    if (b) *b = 0; /* the headers as a string */
    if (thumb) {
        const char *h = strcasestr((char *)buf, "\r\nX-Magpie-Tile: thumbnail");
        *thumb = h && (h[26] == '\r' || h[26] == 0);
    }
    *len = got - off;
    free(*body);
    *body = malloc(*len + 1);
    memcpy(*body, buf + off, *len);
    (*body)[*len] = 0;
    free(buf);
    return status;
}

uint8_t *image_decode(const unsigned char *data, size_t len, int *w, int *h, int *bands)
{
    VipsImage *im = vips_image_new_from_buffer(data, len, "", NULL);
    if (!im) return NULL;
    size_t n;
    uint8_t *px = vips_image_write_to_memory(im, &n);
    *w = im->Xsize;
    *h = im->Ysize;
    *bands = im->Bands;
    g_object_unref(im);
    return px;
}
