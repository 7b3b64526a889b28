/* tests/nn/test_golden.c — ops, one residual block and the losses against PyTorch references
 * (tests/nn/golden/ files, written offline by tools/golden_nn.py). Forward within 1e-5 abs /
 * 1e-4 rel, gradients within 1e-4 abs / 1e-3 rel. */
#include "tests/nn/test_golden_io.h"

#include "nn/gemm.h"
#include "nn/losses.h"
#include "nn/ops.h"

static char nm[160];
static const char *N_(const char *p, const char *k)
{
    snprintf(nm, sizeof nm, "%s%s", p, k);
    return nm;
}
static float *zf(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

TEST(golden_conv)
{
    gold_file g;
    if (gold_load(&g, "ops_conv.bin")) FAIL_CASE("committed golden file tests/nn/golden/ops_conv.bin missing or unreadable");
    int32_t *cnt = gold_i(&g, "count", NULL);
    for (int i = 0; i < cnt[0]; i++) {
        char p[16];
        snprintf(p, sizeof p, "c%d.", i);
        int32_t *c = gold_i(&g, N_(p, "cfg"), NULL);
        nn_conv_dims d = {c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10]};
        size_t nx, nw, ny;
        float *x = gold_f(&g, N_(p, "x"), &nx), *w = gold_f(&g, N_(p, "w"), &nw), *y = gold_f(&g, N_(p, "y"), &ny);
        float *dy = gold_f(&g, N_(p, "dy"), NULL), *dx = gold_f(&g, N_(p, "dx"), NULL), *dw = gold_f(&g, N_(p, "dw"), NULL);
        float *b = c[11] ? gold_f(&g, N_(p, "b"), NULL) : NULL, *db = c[11] ? gold_f(&g, N_(p, "db"), NULL) : NULL;
        float *out = zf(ny), *gx = zf(nx), *gw = zf(nw), *gb = zf(d.OC), *ws = zf(nn_conv2d_workspace(&d));
        nn_conv2d_forward(out, ws, x, w, b, &d);
        char what[64];
        snprintf(what, sizeof what, "conv %d forward", i);
        gold_cmp(what, out, y, ny, FWD_ATOL, FWD_RTOL);
        nn_conv2d_backward(gx, gw, b ? gb : NULL, ws, dy, x, w, &d);
        snprintf(what, sizeof what, "conv %d dx", i);
        gold_cmp(what, gx, dx, nx, GRAD_ATOL, GRAD_RTOL);
        snprintf(what, sizeof what, "conv %d dw", i);
        gold_cmp(what, gw, dw, nw, GRAD_ATOL, GRAD_RTOL);
        if (b) {
            snprintf(what, sizeof what, "conv %d db", i);
            gold_cmp(what, gb, db, d.OC, GRAD_ATOL, GRAD_RTOL);
        }
        free(c), free(x), free(w), free(y), free(dy), free(dx), free(dw), free(b), free(db);
        free(out), free(gx), free(gw), free(gb), free(ws);
    }
    free(cnt);
    gold_free(&g);
}

TEST(golden_norm)
{
    gold_file g;
    if (gold_load(&g, "ops_norm.bin")) FAIL_CASE("committed golden file tests/nn/golden/ops_norm.bin missing or unreadable");
    int32_t *cnt = gold_i(&g, "gn_count", NULL);
    for (int i = 0; i < cnt[0]; i++) {
        char p[16];
        snprintf(p, sizeof p, "gn%d.", i);
        int32_t *c = gold_i(&g, N_(p, "cfg"), NULL);
        int N = c[0], C = c[1], HW = c[2] * c[3], G = c[4], relu = c[5];
        size_t n;
        float *x = gold_f(&g, N_(p, "x"), &n), *ga = gold_f(&g, N_(p, "g"), NULL), *be = gold_f(&g, N_(p, "b"), NULL);
        float *y = gold_f(&g, N_(p, "y"), NULL), *dy = gold_f(&g, N_(p, "dy"), NULL), *dx = gold_f(&g, N_(p, "dx"), NULL);
        float *dg = gold_f(&g, N_(p, "dg"), NULL), *db = gold_f(&g, N_(p, "db"), NULL);
        float *out = zf(n), *mean = zf(N * G), *rstd = zf(N * G), *gx = zf(n), *gg = zf(C), *gb = zf(C);
        nn_groupnorm_forward(out, mean, rstd, x, ga, be, N, C, HW, G, 1e-5f, relu);
        gold_cmp("groupnorm forward", out, y, n, FWD_ATOL, FWD_RTOL);
        nn_groupnorm_backward(gx, gg, gb, dy, x, relu ? out : NULL, mean, rstd, ga, N, C, HW, G);
        gold_cmp("groupnorm dx", gx, dx, n, GRAD_ATOL, GRAD_RTOL);
        gold_cmp("groupnorm dgamma", gg, dg, C, GRAD_ATOL, GRAD_RTOL);
        gold_cmp("groupnorm dbeta", gb, db, C, GRAD_ATOL, GRAD_RTOL);
        free(c), free(x), free(ga), free(be), free(y), free(dy), free(dx), free(dg), free(db);
        free(out), free(mean), free(rstd), free(gx), free(gg), free(gb);
    }
    free(cnt);
    cnt = gold_i(&g, "bn_count", NULL);
    for (int i = 0; i < cnt[0]; i++) {
        char p[16];
        snprintf(p, sizeof p, "bn%d.", i);
        int32_t *c = gold_i(&g, N_(p, "cfg"), NULL), *nbt = gold_i(&g, N_(p, "nbt"), NULL);
        int N = c[0], C = c[1], HW = c[2] * c[3], train = c[4], relu = c[5];
        size_t n;
        float *x = gold_f(&g, N_(p, "x"), &n), *ga = gold_f(&g, N_(p, "g"), NULL), *be = gold_f(&g, N_(p, "b"), NULL);
        float *rm = gold_f(&g, N_(p, "rm0"), NULL), *rv = gold_f(&g, N_(p, "rv0"), NULL);
        float *rm1 = gold_f(&g, N_(p, "rm1"), NULL), *rv1 = gold_f(&g, N_(p, "rv1"), NULL);
        float *y = gold_f(&g, N_(p, "y"), NULL), *dy = gold_f(&g, N_(p, "dy"), NULL), *dx = gold_f(&g, N_(p, "dx"), NULL);
        float *dg = gold_f(&g, N_(p, "dg"), NULL), *db = gold_f(&g, N_(p, "db"), NULL);
        float *out = zf(n), *mean = zf(C), *rstd = zf(C), *gx = zf(n), *gg = zf(C), *gb = zf(C), t = 0;
        nn_batchnorm_forward(out, mean, rstd, rm, rv, &t, x, ga, be, N, C, HW, 0.1f, 1e-5f, train, relu);
        gold_cmp("batchnorm forward", out, y, n, FWD_ATOL, FWD_RTOL);
        gold_cmp("batchnorm running_mean", rm, rm1, C, FWD_ATOL, FWD_RTOL);
        gold_cmp("batchnorm running_var", rv, rv1, C, FWD_ATOL, FWD_RTOL);
        CHECK_INT((int)t, nbt[0]);
        nn_batchnorm_backward(gx, gg, gb, dy, x, relu ? out : NULL, mean, rstd, ga, N, C, HW, train);
        gold_cmp("batchnorm dx", gx, dx, n, GRAD_ATOL, GRAD_RTOL);
        gold_cmp("batchnorm dgamma", gg, dg, C, GRAD_ATOL, GRAD_RTOL);
        gold_cmp("batchnorm dbeta", gb, db, C, GRAD_ATOL, GRAD_RTOL);
        free(c), free(nbt), free(x), free(ga), free(be), free(rm), free(rv), free(rm1), free(rv1), free(y), free(dy);
        free(dx), free(dg), free(db), free(out), free(mean), free(rstd), free(gx), free(gg), free(gb);
    }
    free(cnt);
    gold_free(&g);
}

TEST(golden_misc)
{
    gold_file g;
    if (gold_load(&g, "ops_misc.bin")) FAIL_CASE("committed golden file tests/nn/golden/ops_misc.bin missing or unreadable");
    size_t n, no;
    for (int i = 0; i < 3; i++) {
        char p[16];
        snprintf(p, sizeof p, "mp%d.", i);
        int32_t *c = gold_i(&g, N_(p, "cfg"), NULL);
        float *x = gold_f(&g, N_(p, "x"), &n), *y = gold_f(&g, N_(p, "y"), &no), *dy = gold_f(&g, N_(p, "dy"), NULL);
        float *dx = gold_f(&g, N_(p, "dx"), NULL), *out = zf(no), *gx = zf(n);
        int32_t *am = calloc(no, 4);
        nn_maxpool_forward(out, am, x, c[0], c[1], c[2], c[3], c[4], c[5], c[6]);
        gold_cmp("maxpool forward", out, y, no, FWD_ATOL, FWD_RTOL);
        nn_maxpool_backward(gx, dy, am, c[0], c[1], c[2], c[3], nn_conv_out(c[2], c[4], c[5], c[6]),
                            nn_conv_out(c[3], c[4], c[5], c[6]));
        gold_cmp("maxpool dx", gx, dx, n, GRAD_ATOL, GRAD_RTOL);
        free(c), free(x), free(y), free(dy), free(dx), free(out), free(gx), free(am);
    }
    for (int i = 0; i < 3; i++) {
        char p[16];
        snprintf(p, sizeof p, "amp%d.", i);
        int32_t *c = gold_i(&g, N_(p, "cfg"), NULL);
        float *x = gold_f(&g, N_(p, "x"), &n), *y = gold_f(&g, N_(p, "y"), &no), *dy = gold_f(&g, N_(p, "dy"), NULL);
        float *dx = gold_f(&g, N_(p, "dx"), NULL), *out = zf(no), *gx = zf(n);
        int32_t *am = calloc(no, 4);
        nn_adaptive_maxpool_forward(out, am, x, c[0], c[1], c[2], c[3], c[4], c[5]);
        gold_cmp("adaptive maxpool forward", out, y, no, FWD_ATOL, FWD_RTOL);
        nn_maxpool_backward(gx, dy, am, c[0], c[1], c[2], c[3], c[4], c[5]);
        gold_cmp("adaptive maxpool dx", gx, dx, n, GRAD_ATOL, GRAD_RTOL);
        free(c), free(x), free(y), free(dy), free(dx), free(out), free(gx), free(am);
    }
    {
        float *x = gold_f(&g, "gap.x", &n), *y = gold_f(&g, "gap.y", &no), *dy = gold_f(&g, "gap.dy", NULL);
        float *dx = gold_f(&g, "gap.dx", NULL), *out = zf(no), *gx = zf(n);
        nn_avgpool_global_forward(out, x, 3, 5, 12);
        gold_cmp("gap forward", out, y, no, FWD_ATOL, FWD_RTOL);
        nn_avgpool_global_backward(gx, dy, 3, 5, 12);
        gold_cmp("gap dx", gx, dx, n, GRAD_ATOL, GRAD_RTOL);
        free(x), free(y), free(dy), free(dx), free(out), free(gx);
    }
    {
        float *x = gold_f(&g, "fc.x", &n), *w = gold_f(&g, "fc.w", NULL), *b = gold_f(&g, "fc.b", NULL);
        float *y = gold_f(&g, "fc.y", &no), *dy = gold_f(&g, "fc.dy", NULL), *dx = gold_f(&g, "fc.dx", NULL);
        float *dw = gold_f(&g, "fc.dw", NULL), *db = gold_f(&g, "fc.db", NULL);
        float *out = zf(no), *gx = zf(n), *gw = zf(35), *gb = zf(5);
        nn_linear_forward(out, x, w, b, 4, 7, 5);
        gold_cmp("linear forward", out, y, no, FWD_ATOL, FWD_RTOL);
        nn_linear_backward(gx, gw, gb, dy, x, w, 4, 7, 5);
        gold_cmp("linear dx", gx, dx, n, GRAD_ATOL, GRAD_RTOL);
        gold_cmp("linear dw", gw, dw, 35, GRAD_ATOL, GRAD_RTOL);
        gold_cmp("linear db", gb, db, 5, GRAD_ATOL, GRAD_RTOL);
        free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db), free(out), free(gx), free(gw), free(gb);
    }
    {
        float *x = gold_f(&g, "l2.x", &n), *y = gold_f(&g, "l2.y", NULL), *dy = gold_f(&g, "l2.dy", NULL);
        float *dx = gold_f(&g, "l2.dx", NULL), *out = zf(n), *gx = zf(n), nr[3];
        nn_l2norm_forward(out, nr, x, 3, 11, 1e-12f);
        gold_cmp("l2norm forward", out, y, n, FWD_ATOL, FWD_RTOL);
        nn_l2norm_backward(gx, dy, out, nr, 3, 11, 1e-12f);
        gold_cmp("l2norm dx", gx, dx, n, GRAD_ATOL, GRAD_RTOL);
        free(x), free(y), free(dy), free(dx), free(out), free(gx);
    }
    {
        float *x = gold_f(&g, "relu.x", &n), *y = gold_f(&g, "relu.y", NULL), *dy = gold_f(&g, "relu.dy", NULL);
        float *dx = gold_f(&g, "relu.dx", NULL), *out = zf(n), *gx = zf(n);
        nn_relu_forward(out, x, n);
        gold_cmp("relu forward", out, y, n, FWD_ATOL, FWD_RTOL);
        nn_relu_backward(gx, dy, out, n);
        gold_cmp("relu dx", gx, dx, n, GRAD_ATOL, GRAD_RTOL);
        free(x), free(y), free(dy), free(dx), free(out), free(gx);
    }
    {
        float *a = gold_f(&g, "add.a", &n), *b = gold_f(&g, "add.b", NULL), *y = gold_f(&g, "add.y", NULL);
        float *dy = gold_f(&g, "add.dy", NULL), *da = gold_f(&g, "add.da", NULL), *db = gold_f(&g, "add.db", NULL);
        float *out = zf(n), *ga = zf(n), *gb = zf(n);
        nn_add_forward(out, a, b, n, 1);
        gold_cmp("add+relu forward", out, y, n, FWD_ATOL, FWD_RTOL);
        nn_add_backward(ga, gb, dy, out, n, 1);
        gold_cmp("add+relu da", ga, da, n, GRAD_ATOL, GRAD_RTOL);
        gold_cmp("add+relu db", gb, db, n, GRAD_ATOL, GRAD_RTOL);
        free(a), free(b), free(y), free(dy), free(da), free(db), free(out), free(ga), free(gb);
    }
    gold_free(&g);
}

static void cmp_scalar(const char *what, double got, double ref)
{
    float a = (float)got, b = (float)ref;
    gold_cmp(what, &a, &b, 1, FWD_ATOL, FWD_RTOL);
}

TEST(golden_losses)
{
    gold_file g;
    if (gold_load(&g, "ops_loss.bin")) FAIL_CASE("committed golden file tests/nn/golden/ops_loss.bin missing or unreadable");
    size_t n;
    float *z = gold_f(&g, "ce.z", &n), *cw = gold_f(&g, "ce.w", NULL), *dz = zf(n);
    int32_t *y = gold_i(&g, "ce.y", NULL);
    const char *names[4] = {"ce", "ce_w", "ce_ls", "ce_w_ls"};
    const int weighted[4] = {0, 1, 0, 1};
    const float smooth[4] = {0, 0, 0.1f, 0.2f};
    for (int i = 0; i < 4; i++) {
        memset(dz, 0, n * 4);
        double l = nn_cross_entropy(dz, z, y, 6, 5, weighted[i] ? cw : NULL, smooth[i], 1.0f);
        char k[64];
        snprintf(k, sizeof k, "%s.loss", names[i]);
        cmp_scalar(k, l, gold_d(&g, k, 0));
        snprintf(k, sizeof k, "%s.dz", names[i]);
        float *ref = gold_f(&g, k, NULL);
        gold_cmp(k, dz, ref, n, GRAD_ATOL, GRAD_RTOL);
        free(ref);
    }
    free(z), free(cw), free(dz), free(y);

    float *zs = gold_f(&g, "kd.zs", &n), *zt = gold_f(&g, "kd.zt", NULL), *gs = zf(n), *gt = zf(n);
    for (int T = 1; T <= 4; T += 3) {
        memset(gs, 0, n * 4), memset(gt, 0, n * 4);
        double l = nn_kd_kl(gs, gt, zs, zt, 6, 5, (float)T, 1.0f);
        char k[64];
        snprintf(k, sizeof k, "kd%d.loss", T);
        cmp_scalar(k, l, gold_d(&g, k, 0));
        snprintf(k, sizeof k, "kd%d.dzs", T);
        float *r1 = gold_f(&g, k, NULL);
        gold_cmp(k, gs, r1, n, GRAD_ATOL, GRAD_RTOL);
        snprintf(k, sizeof k, "kd%d.dzt", T);
        float *r2 = gold_f(&g, k, NULL);
        gold_cmp(k, gt, r2, n, GRAD_ATOL, GRAD_RTOL);
        free(r1), free(r2);
    }
    size_t nf;
    float *Fs = gold_f(&g, "rbd.Fs", &nf), *Ft = gold_f(&g, "rbd.Ft", NULL), *dFs = zf(nf), *work = zf(nf);
    for (int l1 = 0; l1 <= 1; l1++) {
        const char *p = l1 ? "rbd_l1." : "rbd.";
        memset(gs, 0, n * 4), memset(dFs, 0, nf * 4);
        double parts[2];
        double l = nn_rbd_loss(gs, dFs, work, zs, zt, Fs, Ft, 6, 5, 8, 2, 3, 7, 9, 2.0f, 0.7f, l1, 1.0f, parts);
        cmp_scalar(N_(p, "loss"), l, gold_d(&g, N_(p, "loss"), 0));
        cmp_scalar("rbd kd part", parts[0], gold_d(&g, N_(p, "loss"), 1));
        cmp_scalar("rbd feature part", parts[1], gold_d(&g, N_(p, "loss"), 2));
        float *r1 = gold_f(&g, N_(p, "dzs"), NULL), *r2 = gold_f(&g, N_(p, "dFs"), NULL);
        gold_cmp("rbd dzs", gs, r1, n, GRAD_ATOL, GRAD_RTOL);
        gold_cmp("rbd dFs", dFs, r2, nf, GRAD_ATOL, GRAD_RTOL);
        free(r1), free(r2);
    }
    free(zs), free(zt), free(gs), free(gt), free(Fs), free(Ft), free(dFs), free(work);

    /* CCD: first call freezes Z, second call reuses it */
    {
        size_t nb, ng;
        float *bank = gold_f(&g, "ccd.bank", &nb), *gg = gold_f(&g, "ccd.g", &ng), *g2 = gold_f(&g, "ccd.g2", NULL);
        float *ref = gold_f(&g, "ccd.dg", NULL), *ref2 = gold_f(&g, "ccd.dg2", NULL), *dg = zf(ng), Z = 0;
        int32_t *idx = gold_i(&g, "ccd.idx", NULL);
        double l = nn_ccd_loss(dg, gg, bank, idx, 4, 16, 3, 6, 30, 0.07f, &Z, 1.0f);
        cmp_scalar("ccd loss", l, gold_d(&g, "ccd.loss", 0));
        cmp_scalar("ccd Z", Z, gold_d(&g, "ccd.loss", 1));
        gold_cmp("ccd dg", dg, ref, ng, GRAD_ATOL, GRAD_RTOL);
        memset(dg, 0, ng * 4);
        l = nn_ccd_loss(dg, g2, bank, idx, 4, 16, 3, 6, 30, 0.07f, &Z, 1.0f);
        cmp_scalar("ccd loss (frozen Z)", l, gold_d(&g, "ccd.loss2", 0));
        gold_cmp("ccd dg (frozen Z)", dg, ref2, ng, GRAD_ATOL, GRAD_RTOL);
        free(bank), free(gg), free(g2), free(ref), free(ref2), free(dg), free(idx);
    }
    /* CRP: centroids, relation KL, gradients for both heads */
    {
        size_t nb, ng, nc;
        float *bs = gold_f(&g, "crp.bs", &nb), *bt = gold_f(&g, "crp.bt", NULL);
        float *cs_ref = gold_f(&g, "crp.cs", &nc), *ct_ref = gold_f(&g, "crp.ct", NULL);
        float *gs2 = gold_f(&g, "crp.gs", &ng), *gt2 = gold_f(&g, "crp.gt", NULL);
        float *r1 = gold_f(&g, "crp.dgs", NULL), *r2 = gold_f(&g, "crp.dgt", NULL);
        int32_t *lab = gold_i(&g, "crp.rowlab", NULL);
        float *cs = zf(nc), *ct = zf(nc), *dgs = zf(ng), *dgt = zf(ng);
        nn_class_centroids(cs, bs, lab, 30, 16, 4);
        nn_class_centroids(ct, bt, lab, 30, 16, 4);
        gold_cmp("crp student centroids", cs, cs_ref, nc, FWD_ATOL, FWD_RTOL);
        gold_cmp("crp teacher centroids", ct, ct_ref, nc, FWD_ATOL, FWD_RTOL);
        double l = nn_crp_loss(dgs, dgt, gs2, gt2, cs, ct, 4, 16, 4, 0.07f, 1.0f);
        cmp_scalar("crp loss", l, gold_d(&g, "crp.loss", 0));
        gold_cmp("crp dgs", dgs, r1, ng, GRAD_ATOL, GRAD_RTOL);
        gold_cmp("crp dgt", dgt, r2, ng, GRAD_ATOL, GRAD_RTOL);
        free(bs), free(bt), free(cs_ref), free(ct_ref), free(gs2), free(gt2), free(r1), free(r2), free(lab);
        free(cs), free(ct), free(dgs), free(dgt);
    }
    gold_free(&g);
}

/* BasicBlock(16 → 32, stride 2, shortcut conv+GN) composed from ops, as nn/model.c does. */
TEST(golden_block)
{
    gold_file g;
    if (gold_load(&g, "model_block.bin")) FAIL_CASE("committed golden file tests/nn/golden/model_block.bin missing or unreadable");
    const int N = 2, C = 16, H = 9, OC = 32, OH = 5, G = 32;
    size_t nx, ny;
    float *x = gold_f(&g, "blk.x", &nx), *y = gold_f(&g, "blk.y", &ny), *dy = gold_f(&g, "blk.dy", NULL);
    float *dx = gold_f(&g, "blk.dx", NULL);
    const char *pn[9] = {"c1.weight", "n1.weight", "n1.bias", "c2.weight", "n2.weight", "n2.bias",
                         "sc.0.weight", "sc.1.weight", "sc.1.bias"};
    float *P[9], *Gref[9], *Gg[9];
    size_t pnum[9];
    for (int i = 0; i < 9; i++) {
        char k[64];
        snprintf(k, sizeof k, "blk.p.%s", pn[i]);
        P[i] = gold_f(&g, k, &pnum[i]);
        snprintf(k, sizeof k, "blk.g.%s", pn[i]);
        Gref[i] = gold_f(&g, k, NULL);
        Gg[i] = zf(pnum[i]);
    }
    nn_conv_dims d1 = {N, C, H, H, OC, 3, 3, 2, 2, 1, 1}, d2 = {N, OC, OH, OH, OC, 3, 3, 1, 1, 1, 1},
                 ds = {N, C, H, H, OC, 1, 1, 2, 2, 0, 0};
    size_t wsn = nn_conv2d_workspace(&d1);
    if (nn_conv2d_workspace(&d2) > wsn) wsn = nn_conv2d_workspace(&d2);
    if (nn_conv2d_workspace(&ds) > wsn) wsn = nn_conv2d_workspace(&ds);
    float *ws = zf(wsn), *c1 = zf(ny), *a1 = zf(ny), *c2 = zf(ny), *n2 = zf(ny), *s = zf(ny), *sn = zf(ny),
          *out = zf(ny);
    float *st = zf(6 * N * G);
    int HW = OH * OH;
    nn_conv2d_forward(c1, ws, x, P[0], NULL, &d1);
    nn_groupnorm_forward(a1, st, st + N * G, c1, P[1], P[2], N, OC, HW, G, 1e-5f, 1);
    nn_conv2d_forward(c2, ws, a1, P[3], NULL, &d2);
    nn_groupnorm_forward(n2, st + 2 * N * G, st + 3 * N * G, c2, P[4], P[5], N, OC, HW, G, 1e-5f, 0);
    nn_conv2d_forward(s, ws, x, P[6], NULL, &ds);
    nn_groupnorm_forward(sn, st + 4 * N * G, st + 5 * N * G, s, P[7], P[8], N, OC, HW, G, 1e-5f, 0);
    nn_add_forward(out, n2, sn, ny, 1);
    gold_cmp("block forward", out, y, ny, FWD_ATOL, FWD_RTOL);
    float *dn2 = zf(ny), *dsn = zf(ny), *dc2 = zf(ny), *da1 = zf(ny), *dc1 = zf(ny), *ds_ = zf(ny), *gx = zf(nx);
    nn_add_backward(dn2, dsn, dy, out, ny, 1);
    nn_groupnorm_backward(ds_, Gg[7], Gg[8], dsn, s, NULL, st + 4 * N * G, st + 5 * N * G, P[7], N, OC, HW, G);
    nn_conv2d_backward(gx, Gg[6], NULL, ws, ds_, x, P[6], &ds);
    nn_groupnorm_backward(dc2, Gg[4], Gg[5], dn2, c2, NULL, st + 2 * N * G, st + 3 * N * G, P[4], N, OC, HW, G);
    nn_conv2d_backward(da1, Gg[3], NULL, ws, dc2, a1, P[3], &d2);
    nn_groupnorm_backward(dc1, Gg[1], Gg[2], da1, c1, a1, st, st + N * G, P[1], N, OC, HW, G);
    nn_conv2d_backward(gx, Gg[0], NULL, ws, dc1, x, P[0], &d1);
    gold_cmp("block dx", gx, dx, nx, GRAD_ATOL, GRAD_RTOL);
    for (int i = 0; i < 9; i++) gold_cmp(pn[i], Gg[i], Gref[i], pnum[i], GRAD_ATOL, GRAD_RTOL);
    for (int i = 0; i < 9; i++) free(P[i]), free(Gref[i]), free(Gg[i]);
    free(x), free(y), free(dy), free(dx), free(ws), free(c1), free(a1), free(c2), free(n2), free(s), free(sn);
    free(out), free(st), free(dn2), free(dsn), free(dc2), free(da1), free(dc1), free(ds_), free(gx);
    gold_free(&g);
}

int main(void)
{
    nn_set_threads(1);
    RUN(golden_conv);
    RUN(golden_norm);
    RUN(golden_misc);
    RUN(golden_losses);
    RUN(golden_block);
    return test_done();
}
