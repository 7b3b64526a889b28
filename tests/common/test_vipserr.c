/* tests/common/test_vipserr.c — mp_vips_err_take: libvips' process-wide error buffer taken in one
 * step, trimmed to one line, and each of two threads failing at once gets its own message. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "common/vipserr.h"
#include "tests/test.h"

#define ROUNDS 3000

TEST(empty_buffer_says_so)
{
    free(mp_vips_err_take(NULL));
    char *m = mp_vips_err_take(NULL);
    CHECK_STR(m, MP_VIPS_NO_MESSAGE);
    free(m);
}

TEST(trimmed_joined_and_emptied)
{
    vips_error("dom", "first  \n");
    vips_error("other", "second");
    char *m = mp_vips_err_take(NULL);
    CHECK_STR(m, "dom: first; other: second");
    free(m);
    CHECK_STR(vips_error_buffer(), "");
    /* a real failure: the loader names the file, and the newline libvips ends it with is gone */
    VipsImage *im = vips_image_new_from_file("/nonexistent/magpie-vipserr.png", NULL);
    CHECK(im == NULL);
    char buf[32];
    mp_vips_err_take_into(buf, sizeof buf, NULL);
    CHECK_INT(strlen(buf), sizeof buf - 1); /* cut to the buffer, still terminated */
    CHECK(strchr(buf, '\n') == NULL);
    CHECK_STR(vips_error_buffer(), "");
}

TEST(mine_leaves_the_others_lines)
{
    vips_error("a", "/x/one.png is bad");
    vips_error("b", "/x/two.png is bad");
    char buf[200];
    CHECK_STR(mp_vips_err_take_into(buf, sizeof buf, "/x/two.png"), "b: /x/two.png is bad");
    CHECK_STR(vips_error_buffer(), "a: /x/one.png is bad\n");
    /* nothing of the caller's: everything is its */
    CHECK_STR(mp_vips_err_take_into(buf, sizeof buf, "/x/three.png"), "a: /x/one.png is bad");
    CHECK_STR(vips_error_buffer(), "");
}

typedef struct {
    char who;
    pthread_barrier_t *start;
    int own, foreign, empty, multiline;
    char bad[300];
} worker;

static void *fail_often(void *arg)
{
    worker *w = arg;
    pthread_barrier_wait(w->start);
    char other[40];
    snprintf(other, sizeof other, "magpie-vipserr-%c-", w->who == 'A' ? 'B' : 'A');
    for (int i = 0; i < ROUNDS; i++) {
        char path[100];
        snprintf(path, sizeof path, "/nonexistent/magpie-vipserr-%c-%d.png", w->who, i);
        VipsImage *im = vips_image_new_from_file(path, NULL);
        if (im) g_object_unref(im);
        char *m = mp_vips_err_take(path);
        if (strstr(m, path)) w->own++;
        if (strstr(m, other)) {
            if (!w->foreign++) snprintf(w->bad, sizeof w->bad, "%s", m);
        }
        if (!strcmp(m, MP_VIPS_NO_MESSAGE)) w->empty++;
        size_t n = strlen(m);
        if (strchr(m, '\n') || (n && m[n - 1] == ' ')) w->multiline++;
        free(m);
    }
    return NULL;
}

TEST(two_threads_each_get_their_own)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    worker a = {.who = 'A', .start = &start}, b = {.who = 'B', .start = &start};
    pthread_t ta, tb;
    CHECK_INT(pthread_create(&ta, NULL, fail_often, &a), 0);
    CHECK_INT(pthread_create(&tb, NULL, fail_often, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&start);
    worker *ws[2] = {&a, &b};
    for (int k = 0; k < 2; k++) {
        CHECK_INT(ws[k]->own, ROUNDS);
        CHECK_INT(ws[k]->foreign, 0);
        CHECK_INT(ws[k]->empty, 0);
        CHECK_INT(ws[k]->multiline, 0);
        if (ws[k]->foreign) fprintf(stderr, "  %c took: %s\n", ws[k]->who, ws[k]->bad);
    }
    CHECK_STR(vips_error_buffer(), "");
}

int main(int argc, char **argv)
{
    if (VIPS_INIT(argv[0])) {
        fprintf(stderr, "libvips does not start\n");
        return 1;
    }
    RUN(empty_buffer_says_so);
    RUN(trimmed_joined_and_emptied);
    RUN(mine_leaves_the_others_lines);
    RUN(two_threads_each_get_their_own);
    return test_done();
}
