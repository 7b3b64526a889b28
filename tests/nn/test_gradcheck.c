/* tests/nn/test_gradcheck.c — every op and loss against central differences.
 * The loss probed is L = Σ out·R for a fixed random R (so backward gets dout = R); numeric
 * derivatives use double accumulation of L. Sizes are odd on purpose, with stride 2, pad 0/1,
 * 1x1 and batch 1 cases, and both the per-image and the batched-GEMM conv paths. */
#include "tests/test.h"

#include <stdint.h>

#include "common/rng.h"
#include "nn/gemm.h"
#include "nn/head.h"
#include "nn/losses.h"
#include "nn/ops.h"

static mp_rng rng;

static float *rnd(size_t n, float lo, float hi)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = mp_rng_uniformf(&rng, lo, hi);
    return p;
}
static float *zeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }
static double dotR(const float *a, const float *R, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * R[i];
    return s;
}

/* A case: loss() runs the forward and returns L; grad() zeroes and fills the analytic grads. */
typedef struct {
    double (*loss)(void);
    void (*grad)(void);
    int nt;
    float *x[5], *g[5];
    size_t n[5];
} gcase;

/* Compare analytic and numeric derivatives on up to `samples` entries of every tensor. */
static void gradcheck(const char *what, gcase *c, double eps, double atol, double rtol, int samples)
{
    c->grad();
    int bad = 0;
    double worst = 0;
    for (int t = 0; t < c->nt; t++) {
        size_t n = c->n[t];
        for (int s = 0; s < samples && s < (int)n; s++) {
            size_t i = n <= (size_t)samples ? (size_t)s : mp_rng_below(&rng, (uint32_t)n);
            float keep = c->x[t][i];
            c->x[t][i] = keep + (float)eps;
            double lp = c->loss();
            c->x[t][i] = keep - (float)eps;
            double lm = c->loss();
            c->x[t][i] = keep;
            double num = (lp - lm) / (2 * eps), ana = c->g[t][i];
            double err = fabs(num - ana);
            if (err > atol + rtol * fabs(num)) {
                /* a ReLU kink or max-pool tie inside [x − eps, x + eps] makes the difference
                 * quotient meaningless: it then changes with the step, so retry with eps/4 and
                 * skip the point if the two quotients disagree */
                c->x[t][i] = keep + (float)(eps / 4);
                double lp2 = c->loss();
                c->x[t][i] = keep - (float)(eps / 4);
                double lm2 = c->loss();
                c->x[t][i] = keep;
                double num2 = (lp2 - lm2) / (eps / 2);
                if (fabs(num2 - num) > atol + rtol * fabs(num)) continue;
            }
            if (err > worst) worst = err;
            if (err > atol + rtol * fabs(num)) {
                if (bad < 5)
                    fprintf(stderr, "  %s: tensor %d [%zu]: analytic %.7g numeric %.7g\n", what, t, i, ana, num);
                bad++;
            }
        }
    }
    t_checks++;
    if (bad) {
        t_fail++;
        fprintf(stderr, "FAIL %s: %d mismatches (worst abs %.3g)\n", what, bad, worst);
    }
}

/* ------------------------------------------------------------ conv2d */
static nn_conv_dims cd;
static float *cx, *cw, *cb, *cgx, *cgw, *cgb, *cout_, *cR, *cws;
static size_t cnx, cnw, cno;
static int cuse_bias;

static double conv_loss(void)
{
    nn_conv2d_forward(cout_, cws, cx, cw, cuse_bias ? cb : NULL, &cd);
    return dotR(cout_, cR, cno);
}
static void conv_grad(void)
{
    memset(cgx, 0, cnx * 4), memset(cgw, 0, cnw * 4), memset(cgb, 0, cd.OC * 4);
    nn_conv2d_forward(cout_, cws, cx, cw, cuse_bias ? cb : NULL, &cd);
    nn_conv2d_backward(cgx, cgw, cuse_bias ? cgb : NULL, cws, cR, cx, cw, &cd);
}

static void conv_case(int N, int C, int H, int W, int OC, int KH, int KW, int sh, int sw, int ph, int pw, int bias)
{
    char what[128];
    snprintf(what, sizeof what, "conv N%d C%d %dx%d OC%d k%dx%d s%d,%d p%d,%d%s", N, C, H, W, OC, KH, KW, sh, sw,
             ph, pw, bias ? " bias" : "");
    cd = (nn_conv_dims){N, C, H, W, OC, KH, KW, sh, sw, ph, pw};
    int OH = nn_conv_out(H, KH, sh, ph), OW = nn_conv_out(W, KW, sw, pw);
    cnx = (size_t)N * C * H * W, cnw = (size_t)OC * C * KH * KW, cno = (size_t)N * OC * OH * OW;
    cuse_bias = bias;
    cx = rnd(cnx, -1, 1), cw = rnd(cnw, -0.5f, 0.5f), cb = rnd(OC, -1, 1), cR = rnd(cno, -1, 1);
    cgx = zeros(cnx), cgw = zeros(cnw), cgb = zeros(OC), cout_ = zeros(cno);
    cws = zeros(nn_conv2d_workspace(&cd));
    gcase c = {conv_loss, conv_grad, bias ? 3 : 2, {cx, cw, cb}, {cgx, cgw, cgb}, {cnx, cnw, (size_t)OC}};
    gradcheck(what, &c, 1e-2, 2e-3, 2e-3, 40);
    /* the direct formula on one output, as an independent check of the forward */
    int n = N - 1, oc = OC - 1, oh = OH / 2, ow = OW - 1;
    double s = bias ? cb[oc] : 0;
    for (int ci = 0; ci < C; ci++)
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++) {
                int ih = oh * sh - ph + kh, iw = ow * sw - pw + kw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                s += (double)cx[((size_t)(n * C + ci) * H + ih) * W + iw] * cw[((size_t)(oc * C + ci) * KH + kh) * KW + kw];
            }
    conv_loss();
    CHECK_NEAR(cout_[((size_t)(n * OC + oc) * OH + oh) * OW + ow], s, 1e-5);
    free(cx), free(cw), free(cb), free(cR), free(cgx), free(cgw), free(cgb), free(cout_), free(cws);
}

TEST(conv2d)
{
    conv_case(2, 3, 7, 5, 4, 3, 3, 1, 1, 1, 1, 0);
    conv_case(1, 2, 9, 8, 3, 3, 3, 2, 2, 0, 0, 1);   /* batch 1: per-image GEMM */
    conv_case(3, 4, 5, 5, 3, 1, 1, 1, 1, 0, 0, 0);   /* 1x1, batched */
    conv_case(1, 4, 5, 6, 3, 1, 1, 1, 1, 0, 0, 1);   /* 1x1 direct, no im2col */
    conv_case(2, 3, 7, 7, 5, 1, 1, 2, 2, 0, 0, 0);   /* shortcut 1x1 stride 2 */
    conv_case(2, 3, 11, 11, 4, 7, 7, 2, 2, 3, 3, 0); /* stem-like */
    conv_case(2, 2, 9, 7, 3, 3, 2, 2, 1, 1, 0, 1);   /* asymmetric kernel/stride/pad */
    conv_case(2, 2, 33, 33, 3, 3, 3, 1, 1, 1, 1, 0); /* ≥1024 output pixels: per image */
    conv_case(2, 2, 34, 34, 2, 1, 1, 1, 1, 0, 0, 0); /* direct 1x1 on a large map */
    conv_case(5, 3, 3, 3, 4, 3, 3, 2, 2, 1, 1, 1);   /* 2x2 maps, batched group (index tables) */
    conv_case(2, 2, 20, 20, 3, 3, 3, 1, 1, 1, 1, 0); /* 400 pixels: batched, row-wise im2col */
    conv_case(1, 32, 48, 48, 3, 3, 3, 1, 1, 1, 1, 0); /* banded im2col: several bands of rows */
    conv_case(3, 4, 1, 1, 5, 3, 3, 1, 1, 1, 1, 1);   /* 1x1 map: only the centre tap is live */
    conv_case(3, 4, 2, 2, 5, 3, 3, 2, 2, 1, 1, 0);   /* 2x2 -> 1x1, stride 2: 4 live taps */
    conv_case(1, 32, 95, 93, 2, 3, 3, 2, 2, 1, 1, 1); /* banded, stride 2, odd sizes */
}

/* ------------------------------------------------------------ norms */
static int nN, nC, nHW, nG, nrelu, ntrain, nbn;
static float *nx, *ng, *nb, *ngx, *ngg, *ngb, *nout, *nR, *nmean, *nrstd, *nrm, *nrv;

static double norm_loss(void)
{
    size_t n = (size_t)nN * nC * nHW;
    if (nbn) {
        float rm[64], rv[64], t = 0; /* keep running stats untouched by probing */
        memcpy(rm, nrm, nC * 4), memcpy(rv, nrv, nC * 4);
        nn_batchnorm_forward(nout, nmean, nrstd, rm, rv, &t, nx, ng, nb, nN, nC, nHW, 0.1f, 1e-5f, ntrain, nrelu);
    } else {
        nn_groupnorm_forward(nout, nmean, nrstd, nx, ng, nb, nN, nC, nHW, nG, 1e-5f, nrelu);
    }
    return dotR(nout, nR, n);
}
static void norm_grad(void)
{
    size_t n = (size_t)nN * nC * nHW;
    memset(ngx, 0, n * 4), memset(ngg, 0, nC * 4), memset(ngb, 0, nC * 4);
    norm_loss();
    if (nbn)
        nn_batchnorm_backward(ngx, ngg, ngb, nR, nx, nrelu ? nout : NULL, nmean, nrstd, ng, nN, nC, nHW, ntrain);
    else
        nn_groupnorm_backward(ngx, ngg, ngb, nR, nx, nrelu ? nout : NULL, nmean, nrstd, ng, nN, nC, nHW, nG);
}
static void norm_case(int bn, int N, int C, int HW, int G, int relu, int train)
{
    char what[96];
    snprintf(what, sizeof what, "%s N%d C%d HW%d G%d relu%d train%d", bn ? "batchnorm" : "groupnorm", N, C, HW, G,
             relu, train);
    nbn = bn, nN = N, nC = C, nHW = HW, nG = G, nrelu = relu, ntrain = train;
    size_t n = (size_t)N * C * HW;
    nx = rnd(n, -2, 2), ng = rnd(C, 0.5f, 1.5f), nb = rnd(C, -0.5f, 0.5f), nR = rnd(n, -1, 1);
    ngx = zeros(n), ngg = zeros(C), ngb = zeros(C), nout = zeros(n), nmean = zeros(N * C), nrstd = zeros(N * C);
    nrm = rnd(C, -0.2f, 0.2f), nrv = rnd(C, 0.5f, 2.0f);
    gcase c = {norm_loss, norm_grad, 3, {nx, ng, nb}, {ngx, ngg, ngb}, {n, (size_t)C, (size_t)C}};
    gradcheck(what, &c, relu ? 1e-3 : 1e-2, 3e-3, 3e-3, 40);
    free(nx), free(ng), free(nb), free(nR), free(ngx), free(ngg), free(ngb), free(nout), free(nmean), free(nrstd);
    free(nrm), free(nrv);
}

TEST(groupnorm)
{
    norm_case(0, 2, 6, 15, 3, 0, 1);
    norm_case(0, 1, 4, 7, 4, 1, 1); /* one channel per group, fused ReLU */
    norm_case(0, 3, 8, 1, 2, 0, 1); /* 1x1 maps */
}

TEST(batchnorm)
{
    norm_case(1, 3, 4, 5, 0, 0, 1);
    norm_case(1, 2, 3, 9, 0, 1, 1);
    norm_case(1, 1, 3, 6, 0, 0, 1); /* batch 1 */
    norm_case(1, 2, 3, 5, 0, 1, 0); /* eval: running stats are constants */
}

TEST(batchnorm_running_stats)
{
    /* one channel, values 1..4: mean 2.5, biased var 1.25, unbiased 5/3 */
    float x[4] = {1, 2, 3, 4}, out[4], mean[1], rstd[1], rm[1] = {0}, rv[1] = {1}, nbt = 0, gm = 1, bt = 0;
    nn_batchnorm_forward(out, mean, rstd, rm, rv, &nbt, x, &gm, &bt, 2, 1, 2, 0.1f, 1e-5f, 1, 0);
    CHECK_NEAR(rm[0], 0.25, 1e-6);
    CHECK_NEAR(rv[0], 0.9 + 0.1 * 5.0 / 3.0, 1e-6);
    CHECK_NEAR(nbt, 1, 0);
    CHECK_NEAR(out[0], (1 - 2.5) / sqrt(1.25 + 1e-5), 1e-5);
    nn_batchnorm_forward(out, mean, rstd, rm, rv, &nbt, x, &gm, &bt, 2, 1, 2, 0.1f, 1e-5f, 0, 0);
    CHECK_NEAR(out[0], (1 - rm[0]) / sqrt(rv[0] + 1e-5), 1e-5);
    CHECK_NEAR(nbt, 1, 0); /* eval does not count */
}

/* ------------------------------------------------------------ pointwise, pooling, linear */
static int pk; /* which op */
static int pN, pC, pH, pW, pk_, ps_, pp_, pOH, pOW, pIN, pOUT;
static float *px, *px2, *pw, *pb, *pgx, *pgx2, *pgw, *pgb, *pout, *pR, *paux;
static int32_t *parg;
static size_t pn, pno;

static double pt_loss(void)
{
    mp_rng r;
    switch (pk) {
    case 0: nn_relu_forward(pout, px, pn); break;
    case 1: nn_add_forward(pout, px, px2, pn, 1); break;
    case 2: mp_rng_seed(&r, 5); nn_dropout_forward(pout, paux, px, pn, 0.3f, &r, 1); break;
    case 3: nn_maxpool_forward(pout, parg, px, pN, pC, pH, pW, pk_, ps_, pp_); break;
    case 4: nn_avgpool_global_forward(pout, px, pN, pC, pH * pW); break;
    case 5: nn_adaptive_maxpool_forward(pout, parg, px, pN, pC, pH, pW, pOH, pOW); break;
    case 6: nn_linear_forward(pout, px, pw, pb, pN, pIN, pOUT); break;
    case 7: nn_l2norm_forward(pout, paux, px, pN, pIN, 1e-12f); break;
    }
    return dotR(pout, pR, pno);
}
static void pt_grad(void)
{
    memset(pgx, 0, pn * 4), memset(pgx2, 0, pn * 4);
    if (pgw) memset(pgw, 0, (size_t)pIN * pOUT * 4), memset(pgb, 0, pOUT * 4);
    pt_loss();
    switch (pk) {
    case 0: nn_relu_backward(pgx, pR, pout, pn); break;
    case 1: nn_add_backward(pgx, pgx2, pR, pout, pn, 1); break;
    case 2: nn_dropout_backward(pgx, pR, paux, pn, 1); break;
    case 3: case 5: nn_maxpool_backward(pgx, pR, parg, pN, pC, pH, pW, pOH, pOW); break;
    case 4: nn_avgpool_global_backward(pgx, pR, pN, pC, pH * pW); break;
    case 6: nn_linear_backward(pgx, pgw, pgb, pR, px, pw, pN, pIN, pOUT); break;
    case 7: nn_l2norm_backward(pgx, pR, pout, paux, pN, pIN, 1e-12f); break;
    }
}
static void pt_case(const char *what, int kind, int N, int C, int H, int W)
{
    pk = kind, pN = N, pC = C, pH = H, pW = W;
    pn = (size_t)N * C * H * W;
    switch (kind) {
    case 3: pOH = nn_conv_out(H, pk_, ps_, pp_), pOW = nn_conv_out(W, pk_, ps_, pp_); pno = (size_t)N * C * pOH * pOW; break;
    case 4: pno = (size_t)N * C; break;
    case 5: pno = (size_t)N * C * pOH * pOW; break;
    case 6: pIN = C * H * W, pOUT = 5, pno = (size_t)N * pOUT; break;
    case 7: pIN = C * H * W, pno = pn; break;
    default: pno = pn;
    }
    /* values kept away from 0 and from each other so ReLU kinks and max ties are not probed */
    px = malloc(pn * 4);
    for (size_t i = 0; i < pn; i++) {
        float v = 0.05f + 0.9f * (float)mp_rng_uniform(&rng);
        px[i] = (mp_rng_below(&rng, 2) ? v : -v) + 1e-4f * (float)(i % 97);
    }
    px2 = rnd(pn, -1, 1), pR = rnd(pno, -1, 1), pgx = zeros(pn), pgx2 = zeros(pn), pout = zeros(pno);
    paux = zeros(pn), parg = calloc(pno, 4);
    pw = pb = pgw = pgb = NULL;
    int nt = kind == 1 ? 2 : 1;
    if (kind == 6) {
        pw = rnd((size_t)pIN * pOUT, -1, 1), pb = rnd(pOUT, -1, 1), pgw = zeros((size_t)pIN * pOUT), pgb = zeros(pOUT);
        nt = 3;
    }
    gcase c = {pt_loss, pt_grad, nt, {px, kind == 6 ? pw : px2, pb}, {pgx, kind == 6 ? pgw : pgx2, pgb},
               {pn, kind == 6 ? (size_t)pIN * pOUT : pn, (size_t)pOUT}};
    gradcheck(what, &c, 1e-3, 3e-3, 3e-3, 40);
    free(px), free(px2), free(pR), free(pgx), free(pgx2), free(pout), free(paux), free(parg);
    free(pw), free(pb), free(pgw), free(pgb);
}

TEST(pointwise_pool_linear)
{
    pt_case("relu", 0, 2, 3, 5, 3);
    pt_case("add+relu", 1, 1, 3, 4, 5);
    pt_case("dropout", 2, 2, 2, 3, 3);
    pk_ = 3, ps_ = 2, pp_ = 1;
    pt_case("maxpool 3/2/1", 3, 2, 3, 7, 7);
    pk_ = 2, ps_ = 2, pp_ = 0;
    pt_case("maxpool 2/2/0 odd", 3, 1, 2, 5, 7);
    pt_case("gap", 4, 3, 4, 3, 5);
    pOH = 3, pOW = 2;
    pt_case("adaptive maxpool 7x5->3x2", 5, 2, 3, 7, 5);
    pOH = 4, pOW = 4;
    pt_case("adaptive maxpool 7x7->4x4 (overlapping)", 5, 1, 2, 7, 7);
    pt_case("linear", 6, 3, 7, 1, 1);
    pt_case("linear batch 1", 6, 1, 4, 1, 1);
    pt_case("l2norm", 7, 3, 9, 1, 1);
}

/* The projection head (nn/head.h) as a layer: input and all four parameters. */
static nn_head hd;
static nn_params hps;
static float *hx, *hgx, *hR;
static int hN = 3, hIN = 7, hD = 5;
static double head_loss(void)
{
    nn_head_forward(&hd, hx, hN);
    return dotR(hd.g, hR, (size_t)hN * hD);
}
static void head_grad(void)
{
    nn_head_forward(&hd, hx, hN);
    memset(hgx, 0, sizeof(float) * hN * hIN);
    nn_params_zero_grad(&hps);
    memcpy(hd.dg, hR, sizeof(float) * hN * hD);
    nn_head_backward(&hd, hx, hN, hgx);
}

TEST(projection_head)
{
    memset(&hps, 0, sizeof hps);
    nn_head_plan(&hps, "head", hIN, hD);
    CHECK_INT(nn_params_alloc(&hps), 0);
    nn_head_bind(&hd, &hps, 0, hIN, hD, hN);
    nn_head_init(&hd, &rng);
    CHECK_STR(hps.p[2].name, "head.1.weight");
    hx = rnd((size_t)hN * hIN, -1, 1);
    hgx = zeros((size_t)hN * hIN);
    hR = rnd((size_t)hN * hD, -1, 1);
    gcase c = {head_loss, head_grad, 5, {hx, hd.w1->data, hd.b1->data, hd.w2->data, hd.b2->data},
               {hgx, hd.w1->grad, hd.b1->grad, hd.w2->grad, hd.b2->grad},
               {(size_t)hN * hIN, hd.w1->numel, hd.b1->numel, hd.w2->numel, hd.b2->numel}};
    gradcheck("projection head", &c, 1e-3, 3e-3, 3e-3, 40);
    nn_head_free(&hd);
    nn_params_free(&hps);
    free(hx), free(hgx), free(hR);
}

/* Ties go to the first maximum in scan order, as in PyTorch (backward routes there). */
TEST(maxpool_ties)
{
    float x[20], out[6];
    int32_t am[6];
    for (int i = 0; i < 20; i++) x[i] = 1.0f;
    x[13] = 2.0f, x[18] = 2.0f; /* (2,3) and (3,3) of a 5-wide plane: the row above wins */
    nn_maxpool_forward(out, am, x, 1, 1, 4, 5, 3, 2, 1);
    CHECK_INT(am[0], 0);
    CHECK_INT(am[1], 1);
    CHECK_INT(am[2], 3);
    CHECK_INT(am[3], 5);
    CHECK_INT(am[4], 13);
    CHECK_INT(am[5], 13);
    CHECK(out[5] == 2.0f);
    nn_maxpool_forward(out, NULL, x, 1, 1, 4, 5, 3, 2, 1); /* inference: no argmax */
    CHECK(out[5] == 2.0f && out[0] == 1.0f);
}

TEST(dropout_stats)
{
    size_t n = 20000;
    float *x = zeros(n), *o = zeros(n), *m = zeros(n);
    for (size_t i = 0; i < n; i++) x[i] = 1;
    mp_rng r;
    mp_rng_seed(&r, 1);
    nn_dropout_forward(o, m, x, n, 0.25f, &r, 1);
    size_t z = 0;
    double s = 0;
    for (size_t i = 0; i < n; i++) z += o[i] == 0, s += o[i];
    CHECK(z > 0.23 * n && z < 0.27 * n);
    CHECK_NEAR(s / n, 1.0, 0.03);
    nn_dropout_forward(o, m, x, n, 0.25f, &r, 0);
    CHECK(o[0] == 1 && o[n - 1] == 1);
    free(x), free(o), free(m);
}

/* ------------------------------------------------------------ losses */
static int lN, lK, lD, lP, lKn, lnd;
static float *lzs, *lzt, *lgs, *lgt, *lw, *lfs, *lft, *lgfs, *lwork, *lbank, *lcs, *lct, lZ;
static int32_t *llab, *lidx;
static int lkind;

static double loss_fn(float *gs, float *gt)
{
    switch (lkind) {
    case 0: return nn_cross_entropy(gs, lzs, llab, lN, lK, lw, 0.1f, 1.0f);
    case 1: return nn_cross_entropy(gs, lzs, llab, lN, lK, NULL, 0.0f, 1.0f);
    case 2: return nn_kd_kl(gs, gt, lzs, lzt, lN, lK, 4.0f, 1.0f);
    case 3: return nn_mse(gs, gt, lzs, lzt, (size_t)lN * lK, 1.0f);
    case 4: return nn_l1(gs, gt, lzs, lzt, (size_t)lN * lK, 1.0f);
    case 5: return nn_rbd_loss(gs, lgt, lwork, lzs, lzt, lfs, lft, lN, lK, 3, 2, 3, 5, 7, 2.0f, 1.0f, 0, 1.0f, NULL);
    case 6: return nn_ccd_loss(gs, lzs, lbank, lidx, lN, lD, lP, lKn, lnd, 0.07f, &lZ, 1.0f);
    case 7: return nn_crp_loss(gs, gt, lzs, lzt, lcs, lct, lN, lD, lK, 0.07f, 1.0f);
    }
    return 0;
}
static size_t lnz;
static double l_loss(void) { return loss_fn(NULL, NULL); }
static void l_grad(void)
{
    memset(lgs, 0, lnz * 4), memset(lgt, 0, lnz * 4);
    if (lkind == 5) {
        memset(lgfs, 0, 3 * 2 * 3 * lN * 4);
        nn_rbd_loss(lgs, lgfs, lwork, lzs, lzt, lfs, lft, lN, lK, 3, 2, 3, 5, 7, 2.0f, 1.0f, 0, 1.0f, NULL);
        return;
    }
    loss_fn(lgs, lkind >= 2 ? lgt : NULL);
}

TEST(losses)
{
    lN = 3, lK = 4;
    lnz = (size_t)lN * 128;
    lzs = rnd(lnz, -2, 2), lzt = rnd(lnz, -2, 2), lgs = zeros(lnz), lgt = zeros(lnz);
    lw = rnd(lK, 0.5f, 3);
    int32_t lab[3] = {2, 0, 3};
    llab = lab;
    const char *names[] = {"cross-entropy weighted+smoothing", "cross-entropy", "kd kl T=4", "mse", "l1"};
    for (lkind = 0; lkind <= 4; lkind++) {
        gcase c = {l_loss, l_grad, lkind >= 2 ? 2 : 1, {lzs, lzt}, {lgs, lgt}, {(size_t)lN * lK, (size_t)lN * lK}};
        gradcheck(names[lkind], &c, 1e-3, 1e-3, 3e-3, 12);
    }
    /* RBD: student map 3×2×3, teacher 3×5×7 (N=3) */
    lkind = 5;
    lfs = rnd(3 * 2 * 3 * lN, -1, 1), lft = rnd(3 * 5 * 7 * lN, -1, 1), lgfs = zeros(3 * 2 * 3 * lN);
    lwork = zeros(3 * 2 * 3 * lN);
    {
        gcase c = {l_loss, l_grad, 2, {lzs, lfs}, {lgs, lgfs}, {(size_t)lN * lK, (size_t)3 * 2 * 3 * lN}};
        gradcheck("rbd", &c, 1e-3, 1e-3, 3e-3, 18);
    }
    /* CCD: D = 16, n_data = 40, P = 3, K = 5, normalised anchors */
    lkind = 6, lD = 16, lnd = 40, lP = 3, lKn = 5;
    mp_rng r;
    mp_rng_seed(&r, 3);
    lbank = zeros((size_t)lnd * lD);
    nn_membank_init(lbank, lnd, lD, &r);
    for (int i = 0; i < lN; i++) {
        double s = 0;
        for (int d = 0; d < lD; d++) s += lzs[i * lD + d] * lzs[i * lD + d];
        for (int d = 0; d < lD; d++) lzs[i * lD + d] /= (float)sqrt(s);
    }
    int32_t idx[3 * 8];
    for (int i = 0; i < 3 * 8; i++) idx[i] = (int32_t)mp_rng_below(&r, lnd);
    lidx = idx;
    lZ = 0;
    l_loss(); /* freezes Z */
    CHECK(lZ > 0);
    {
        gcase c = {l_loss, l_grad, 1, {lzs}, {lgs}, {(size_t)lN * lD}};
        gradcheck("ccd", &c, 1e-3, 2e-3, 3e-3, 30);
    }
    /* CRP: 4 classes, centroids from a labelled bank */
    lkind = 7;
    int32_t rowlab[40];
    for (int i = 0; i < lnd; i++) rowlab[i] = i % lK;
    lcs = zeros((size_t)lK * lD), lct = zeros((size_t)lK * lD);
    nn_class_centroids(lcs, lbank, rowlab, lnd, lD, lK);
    for (int i = 0; i < lnd * lD; i++) lbank[i] = -lbank[i];
    nn_class_centroids(lct, lbank, rowlab, lnd, lD, lK);
    {
        double s = 0;
        for (int d = 0; d < lD; d++) s += lcs[d] * lcs[d];
        CHECK_NEAR(s, 1.0, 1e-5);
        gcase c = {l_loss, l_grad, 2, {lzs, lzt}, {lgs, lgt}, {(size_t)lN * lD, (size_t)lN * lD}};
        gradcheck("crp", &c, 1e-3, 2e-3, 3e-3, 30);
    }
    free(lzs), free(lzt), free(lgs), free(lgt), free(lw), free(lfs), free(lft), free(lgfs), free(lwork);
    free(lbank), free(lcs), free(lct);
}

TEST(membank_update)
{
    float bank[2 * 3] = {1, 0, 0, 0, 1, 0}, g[3] = {0, 1, 0};
    int32_t id = 0;
    nn_membank_update(bank, g, &id, 1, 3, 0.5f);
    CHECK_NEAR(bank[0], sqrt(0.5), 1e-6);
    CHECK_NEAR(bank[1], sqrt(0.5), 1e-6);
    CHECK_NEAR(bank[4], 1, 0); /* other rows untouched */
}

int main(void)
{
    nn_set_threads(1);
    mp_rng_seed(&rng, 12345);
    RUN(conv2d);
    RUN(groupnorm);
    RUN(batchnorm);
    RUN(batchnorm_running_stats);
    RUN(pointwise_pool_linear);
    RUN(projection_head);
    RUN(maxpool_ties);
    RUN(dropout_stats);
    RUN(losses);
    RUN(membank_update);
    return test_done();
}
