/* tests/nn/test_optim.c — optimisers and schedules against PyTorch goldens
 * (tests/nn/golden/optim_golden.safetensors, written by tools/golden_optim.py), plus gradient
 * accumulation, frozen entries, EMA and clipping checked against their definitions. */
#include "tests/test.h"

#include <stdint.h>

#include "common/error.h"
#include "nn/optim.h"
#include "nn/safetensors.h"

static nn_st_file g;

static const float *gt(const char *fmt, const char *c, int k)
{
    char name[128];
    snprintf(name, sizeof name, fmt, c, k);
    const nn_st_tensor *t = nn_st_find(&g, name);
    if (!t || t->dtype != NN_F32) {
        fprintf(stderr, "golden tensor %s missing\n", name);
        exit(1);
    }
    return (const float *)t->data; /* safetensors data here is 4-aligned: header padded to 8 */
}

static double meta_d(const char *c, const char *key, double dflt)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", c, key);
    const char *s = nn_st_meta(&g, name);
    if (!s) return dflt;
    if (!strcmp(s, "True")) return 1;
    if (!strcmp(s, "False")) return 0;
    return atof(s);
}

static void make(nn_params *ps)
{
    memset(ps, 0, sizeof *ps);
    nn_params_add(ps, "w", 2, (int64_t[]){3, 4}, 1);
    nn_params_add(ps, "frozen", 1, (int64_t[]){5}, 0);
    nn_params_add(ps, "b", 1, (int64_t[]){4}, 1);
    nn_params_alloc(ps);
}

/* Run one golden case, printing the max relative parameter error. */
static void run_case(const char *c)
{
    t_case = c;
    char key[128];
    snprintf(key, sizeof key, "%s.kind", c);
    const char *k = nn_st_meta(&g, key);
    snprintf(key, sizeof key, "%s.sched", c);
    const char *sk = nn_st_meta(&g, key);
    CHECK(k && sk);
    if (!k || !sk) return;
    nn_optim_cfg cfg = nn_optim_defaults(!strcmp(k, "sgd") ? NN_OPT_SGD : !strcmp(k, "adam") ? NN_OPT_ADAM : NN_OPT_ADAMW);
    cfg.lr = meta_d(c, "lr", cfg.lr);
    cfg.weight_decay = meta_d(c, "wd", 0);
    cfg.momentum = meta_d(c, "momentum", 0);
    cfg.nesterov = (int)meta_d(c, "nesterov", 0);
    cfg.beta1 = meta_d(c, "beta1", 0.9);
    cfg.beta2 = meta_d(c, "beta2", 0.999);
    cfg.eps = meta_d(c, "eps", 1e-8);
    nn_sched s = nn_sched_constant(cfg.lr);
    if (!strcmp(sk, "step")) s = nn_sched_step(cfg.lr, (int64_t)meta_d(c, "step_size", 1), meta_d(c, "gamma", 0.1));
    if (!strcmp(sk, "cosine")) s = nn_sched_cosine(cfg.lr, (int64_t)meta_d(c, "T_max", 1), meta_d(c, "eta_min", 0));
    if (!strcmp(sk, "onecycle")) s = nn_sched_onecycle(meta_d(c, "max_lr", 0), (int64_t)meta_d(c, "total_steps", 1));

    nn_params ps;
    make(&ps);
    nn_param *w = nn_params_find(&ps, "w"), *b = nn_params_find(&ps, "b"), *fz = nn_params_find(&ps, "frozen");
    memcpy(w->data, gt("%s.w0", c, 0), 12 * sizeof(float));
    memcpy(b->data, gt("%s.b0", c, 0), 4 * sizeof(float));
    for (int i = 0; i < 5; i++) fz->data[i] = (float)i;
    nn_optim o;
    CHECK_INT(nn_optim_init(&o, &ps, &cfg), 0);
    int steps = atoi(nn_st_meta(&g, "steps"));
    const nn_st_tensor *tl = nn_st_find(&g, (snprintf(key, sizeof key, "%s.lr", c), key));
    const nn_st_tensor *tm = nn_st_find(&g, (snprintf(key, sizeof key, "%s.mom", c), key));
    double worst = 0;
    for (int st = 0; st < steps; st++) {
        nn_sched_apply(&s, &o);
        double want_lr, want_mom;
        memcpy(&want_lr, tl->data + 8 * st, 8);
        memcpy(&want_mom, tm->data + 8 * st, 8);
        CHECK_NEAR(o.lr, want_lr, 1e-12 + 1e-9 * want_lr);
        CHECK_NEAR(cfg.kind == NN_OPT_SGD ? o.momentum : o.beta1, want_mom, 1e-12);
        memcpy(w->grad, gt("%s.g.%d.w", c, st), 12 * sizeof(float));
        memcpy(b->grad, gt("%s.g.%d.b", c, st), 4 * sizeof(float));
        CHECK_INT(nn_optim_step(&o), 1);
        const float *pw = gt("%s.p.%d.w", c, st), *pb = gt("%s.p.%d.b", c, st);
        for (int i = 0; i < 16; i++) {
            double got = i < 12 ? w->data[i] : b->data[i - 12], want = i < 12 ? pw[i] : pb[i - 12];
            double err = fabs(got - want) / (1e-6 + fabs(want));
            if (err > worst) worst = err;
            if (fabs(got - want) > 1e-6 + 1e-5 * fabs(want))
                fprintf(stderr, "%s step %d elem %d: got %.9g want %.9g\n", c, st, i, got, want);
            CHECK(fabs(got - want) <= 1e-6 + 1e-5 * fabs(want));
        }
        CHECK(w->grad[0] == 0 && b->grad[3] == 0); /* zeroed after the update */
    }
    for (int i = 0; i < 5; i++) CHECK(fz->data[i] == (float)i); /* buffers untouched */
    fprintf(stderr, "     %-16s max rel err %.2e over %d steps\n", c, worst, steps);
    nn_optim_free(&o);
    nn_params_free(&ps);
}

TEST(goldens)
{
    char path[1024];
    const char *src = getenv("MAGPIE_SRC");
    snprintf(path, sizeof path, "%s/tests/nn/golden/optim_golden.safetensors", src ? src : ".");
    if (nn_st_read(path, &g) != 0) {
        fprintf(stderr, "%s\n", mp_err());
        CHECK(0);
        return;
    }
    char *cases = strdup(nn_st_meta(&g, "cases"));
    int n = 0;
    for (char *sv, *c = strtok_r(cases, ",", &sv); c; c = strtok_r(NULL, ",", &sv), n++) run_case(c);
    t_case = "goldens";
    CHECK_INT(n, 10);
    free(cases);
    nn_st_free(&g);
}

/* Two micro-batches with accumulation 2 == one step on their mean gradient. */
TEST(accumulation)
{
    nn_params a, b;
    make(&a);
    make(&b);
    for (size_t i = 0; i < a.total; i++) a.data[i] = b.data[i] = (float)i * 0.1f;
    nn_optim_cfg cfg = nn_optim_defaults(NN_OPT_ADAM);
    cfg.accum_steps = 2;
    nn_optim oa, ob;
    nn_optim_init(&oa, &a, &cfg);
    cfg.accum_steps = 1;
    nn_optim_init(&ob, &b, &cfg);
    nn_param *wa = nn_params_find(&a, "w"), *wb = nn_params_find(&b, "w");
    for (int i = 0; i < 12; i++) wa->grad[i] += 0.5f * (float)i;
    CHECK_INT(nn_optim_step(&oa), 0);
    CHECK(wa->grad[3] == 1.5f); /* not applied, not zeroed */
    for (int i = 0; i < 12; i++) wa->grad[i] += 0.25f;
    CHECK_INT(nn_optim_step(&oa), 1);
    for (int i = 0; i < 12; i++) wb->grad[i] = (0.5f * (float)i + 0.25f) / 2;
    CHECK_INT(nn_optim_step(&ob), 1);
    for (int i = 0; i < 12; i++) CHECK_NEAR(wa->data[i], wb->data[i], 1e-7);
    CHECK_INT(oa.step, 1);
    nn_optim_free(&oa);
    nn_optim_free(&ob);
    nn_params_free(&a);
    nn_params_free(&b);
}

TEST(ema)
{
    nn_params t, s;
    make(&t);
    make(&s);
    for (size_t i = 0; i < t.total; i++) {
        t.data[i] = 1;
        s.data[i] = 3;
    }
    CHECK_INT(nn_ema_update(&t, &s, 0, 0.99), 0); /* alpha = min(0, .99) = 0: copy */
    CHECK(nn_params_find(&t, "w")->data[0] == 3);
    CHECK(nn_params_find(&t, "frozen")->data[0] == 1); /* buffers untouched */
    for (size_t i = 0; i < t.total; i++) t.data[i] = 1;
    CHECK_INT(nn_ema_update(&t, &s, 3, 0.99), 0); /* alpha = 0.75 */
    CHECK_NEAR(nn_params_find(&t, "b")->data[2], 0.75 * 1 + 0.25 * 3, 1e-7);
    for (size_t i = 0; i < t.total; i++) t.data[i] = 1;
    CHECK_INT(nn_ema_update(&t, &s, 1000, 0.99), 0); /* alpha capped at 0.99 */
    CHECK_NEAR(nn_params_find(&t, "w")->data[7], 0.99 + 0.01 * 3, 1e-6);
    nn_params o = {0};
    nn_params_add(&o, "w", 1, (int64_t[]){2}, 1);
    nn_params_alloc(&o);
    CHECK_INT(nn_ema_update(&t, &o, 1, 0.99), -1);
    CHECK_STR(mp_err(), "ema: teacher and student have different parameter tables");
    nn_params_free(&o);
    nn_params_free(&t);
    nn_params_free(&s);
}

TEST(clip_and_errors)
{
    nn_params ps;
    make(&ps);
    nn_param *w = nn_params_find(&ps, "w");
    w->grad[0] = 3;
    w->grad[1] = 4;
    CHECK_NEAR(nn_clip_grad_norm(&ps, 1.0), 5.0, 1e-12);
    CHECK_NEAR(w->grad[0], 3 / (5 + 1e-6), 1e-6);
    nn_optim o;
    nn_optim_cfg cfg = nn_optim_defaults(NN_OPT_SGD);
    cfg.nesterov = 1;
    CHECK_INT(nn_optim_init(&o, &ps, &cfg), -1);
    CHECK_STR(mp_err(), "optim: nesterov needs a positive momentum");
    /* one-cycle endpoints: starts at max/25, peaks at max, ends at max/25/1e4 */
    nn_sched s = nn_sched_onecycle(1.0, 101);
    CHECK_NEAR(nn_sched_lr(&s, 0), 0.04, 1e-15);
    CHECK_NEAR(nn_sched_lr(&s, 100), 0.04 / 1e4, 1e-15);
    CHECK_NEAR(nn_sched_momentum(&s, 0, 0.9), 0.95, 1e-15);
    /* linear warm-up of a constant schedule: lr x (t + 1) / N for t < N, then lr; none by default */
    nn_sched c = nn_sched_constant(1e-3);
    CHECK_NEAR(nn_sched_lr(&c, 0), 1e-3, 1e-18);
    c.warmup = 4;
    CHECK_NEAR(nn_sched_lr(&c, 0), 0.25e-3, 1e-18);
    CHECK_NEAR(nn_sched_lr(&c, 2), 0.75e-3, 1e-18);
    CHECK_NEAR(nn_sched_lr(&c, 3), 1e-3, 1e-18);
    CHECK_NEAR(nn_sched_lr(&c, 1000), 1e-3, 1e-18);
    s.warmup = 50; /* one-cycle has its own warm-up: the field is ignored */
    CHECK_NEAR(nn_sched_lr(&s, 0), 0.04, 1e-15);
    nn_params_free(&ps);
}

int main(void)
{
    RUN(goldens);
    RUN(accumulation);
    RUN(ema);
    RUN(clip_and_errors);
    return test_done();
}
