/* synth/render.c — pixels of a synthetic H&E slide for any level-0 rectangle.
 * Stain amounts (hematoxylin h, eosin e) are built per pixel from stroma texture and nuclei,
 * then Beer–Lambert: OD = h·H + e·E (+ ink, dust, glass), RGB = white·exp(−OD). */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/util.h"
#include "synth/internal.h"

#define CHUNK 256
#define NUC_A_MAX 12.0f /* largest semi-axis of any nucleus type, µm */
#define DUST_MARGIN_UM 40.0f

/* Stain constants (SYNTH.md): stroma eosin 0.42 with fibres ±0.13, slow variation ±0.08,
 * pale gaps eosin × 0.25, eosin reduced under nuclei. Nuclear hematoxylin per type below. */
#define E_STROMA 0.42f
#define H_STROMA 0.06f
#define H_TUM_RIM 0.95f /* times h_nuc[tumor] */
#define H_TUM_IN 0.32f
#define GLASS_WHITE 246.0f
#define GLASS_OD_R 0.012f /* glass tint */
#define GLASS_OD_G 0.012f
#define GLASS_OD_B 0.008f

/* exp(−od) by table: od in [0, 16) at 1/256 steps, linear in between (error < 1e-5). */
#define TRANS_STEPS 256
#define TRANS_N (16 * TRANS_STEPS)
static float trans_lut[TRANS_N + 2];
static float glass_t[3];
static pthread_once_t trans_once = PTHREAD_ONCE_INIT;

static void trans_init(void)
{
    for (int i = 0; i <= TRANS_N + 1; i++) trans_lut[i] = expf(-(float)i / TRANS_STEPS);
    glass_t[0] = expf(-GLASS_OD_R), glass_t[1] = expf(-GLASS_OD_G), glass_t[2] = expf(-GLASS_OD_B);
}

static inline float trans(float od)
{
    if (od <= 0) return od < 0 ? expf(-od) : 1.0f;
    float t = od * TRANS_STEPS;
    if (t >= TRANS_N) return 0.0f;
    int i = (int)t;
    float f = t - (float)i;
    return trans_lut[i] + (trans_lut[i + 1] - trans_lut[i]) * f;
}

typedef struct {
    float x, y;      /* centre, µm */
    float a, b;      /* semi-axes, µm */
    float c, s;      /* orientation */
    int type;
    float amp[3], pc[3], ps[3]; /* outline harmonics k = 2..4 (tumour) */
    int nnuc;
    float nx[2], ny[2], nr[2];  /* nucleoli in local µm */
    uint32_t salt;
} nucleus;

struct synth_scratch {
    float *hn, *cov, *en, *art; /* CHUNK² each; art has 3 planes */
    float *lat;                 /* lattice values, L_N per point */
    float *row;                 /* lattice interpolated along y for one pixel row */
    int lat_cap, row_cap;
    nucleus *nuc;
    int nuc_n, nuc_cap;
};

synth_scratch *synth_scratch_new(void)
{
    pthread_once(&trans_once, trans_init);
    synth_scratch *sc = mp_xcalloc(1, sizeof *sc);
    sc->hn = mp_xmalloc(sizeof(float) * CHUNK * CHUNK);
    sc->cov = mp_xmalloc(sizeof(float) * CHUNK * CHUNK);
    sc->en = mp_xmalloc(sizeof(float) * CHUNK * CHUNK);
    sc->art = mp_xmalloc(sizeof(float) * CHUNK * CHUNK * 3);
    return sc;
}

void synth_scratch_free(synth_scratch *sc)
{
    if (!sc) return;
    free(sc->hn);
    free(sc->cov);
    free(sc->en);
    free(sc->art);
    free(sc->lat);
    free(sc->row);
    free(sc->nuc);
    free(sc);
}

/* Gaussian CDF approximation: the profile of a blurred edge at signed distance t·σ. */
static inline float edge_cdf(float t)
{
    if (t > 4.0f) return 1.0f;
    if (t < -4.0f) return 0.0f;
    return 1.0f / (1.0f + expf(-1.702f * t));
}

static int poisson(mp_rng *r, float lambda)
{
    /* Knuth: lambda here is at most a few units */
    float L = expf(-lambda), p = 1.0f;
    int k = 0;
    do {
        k++;
        p *= (float)mp_rng_uniform(r);
    } while (p > L && k < 1000);
    return k - 1;
}

/* Chunk geometry shared by the passes. */
typedef struct {
    int x0, y0, w, h;
    float mpp;
    int32_t li0, lj0, lnx, lny; /* lattice window */
} chunk;

static inline void lat_at(const chunk *ck, const float *lat, float u, float v, float out[L_N])
{
    float gx = u / SYN_LATTICE_UM - (float)ck->li0, gy = v / SYN_LATTICE_UM - (float)ck->lj0;
    int i = (int)gx, j = (int)gy;
    if (i < 0) i = 0;
    if (j < 0) j = 0;
    if (i > ck->lnx - 2) i = ck->lnx - 2;
    if (j > ck->lny - 2) j = ck->lny - 2;
    float fx = gx - (float)i, fy = gy - (float)j;
    const float *a = lat + ((size_t)j * ck->lnx + i) * L_N, *b = a + L_N, *c = a + (size_t)ck->lnx * L_N, *d = c + L_N;
    for (int k = 0; k < L_N; k++) {
        float top = a[k] + (b[k] - a[k]) * fx, bot = c[k] + (d[k] - c[k]) * fx;
        out[k] = top + (bot - top) * fy;
    }
}

/* Nuclei of one placement cell. Candidates are drawn at the highest possible density and
 * thinned by the local class and region density, so the cell's stream never depends on
 * where it is rendered from. */
static void cell_nuclei(const synth_slide *s, const chunk *ck, const float *lat, int32_t ci, int32_t cj,
                        synth_scratch *sc)
{
    const synth_params *p = &s->p;
    int K = p->nclasses;
    mp_rng r;
    mp_rng_derive(&r, s->seed, P_NUCLEI, (uint64_t)(uint32_t)ci, (uint64_t)(uint32_t)cj);
    float cell = SYN_CELL_UM;
    for (int tk = 0; tk < K; tk++) {
        int t = p->types[tk];
        float wmax = 1.0f;
        int n = poisson(&r, s->lambda[t] * cell * cell * s->jmax * wmax);
        for (int q = 0; q < n; q++) {
            uint64_t sub = mp_rng_u64(&r);
            float x = ((float)ci + (float)mp_rng_uniform(&r)) * cell;
            float y = ((float)cj + (float)mp_rng_uniform(&r)) * cell;
            float acc = (float)mp_rng_uniform(&r);
            float f[L_N];
            lat_at(ck, lat, x, y, f);
            if (f[L_F] <= 0) continue; /* no nuclei on glass */
            uint32_t rid;
            int cls = syn_region_at(s, x, y, &rid);
            float w = cls == tk ? 1.0f - (float)p->mix : (float)p->mix / (float)(K - 1);
            if (acc >= w * syn_region_density(s, rid) / s->jmax) continue;
            /* shape from the candidate's own stream */
            mp_rng g;
            mp_rng_seed(&g, sub);
            if (sc->nuc_n == sc->nuc_cap) {
                sc->nuc_cap = sc->nuc_cap ? 2 * sc->nuc_cap : 256;
                sc->nuc = mp_xrealloc(sc->nuc, sizeof(nucleus) * sc->nuc_cap);
            }
            nucleus *nu = &sc->nuc[sc->nuc_n++];
            memset(nu, 0, sizeof *nu);
            nu->x = x, nu->y = y, nu->type = t;
            nu->salt = (uint32_t)(sub >> 32);
            float th = 6.2831853f * (float)mp_rng_uniform(&g);
            if (t == SYNTH_LYMPHOCYTE) {
                float rad = mp_rng_uniformf(&g, 2.6f, 3.6f);
                nu->a = rad * mp_rng_uniformf(&g, 1.0f, 1.08f);
                nu->b = rad;
            } else if (t == SYNTH_TUMOR) {
                float rad = mp_rng_uniformf(&g, 7.0f, 11.0f), asp = mp_rng_uniformf(&g, 0.6f, 1.0f);
                nu->a = rad / sqrtf(asp);
                nu->b = rad * sqrtf(asp);
                if (nu->a > 12.0f) nu->b *= 12.0f / nu->a, nu->a = 12.0f;
                for (int k = 0; k < 3; k++) {
                    float ph = 6.2831853f * (float)mp_rng_uniform(&g);
                    nu->amp[k] = mp_rng_uniformf(&g, 0.0f, 0.06f);
                    nu->pc[k] = cosf(ph), nu->ps[k] = sinf(ph);
                }
                nu->nnuc = 1 + (int)mp_rng_below(&g, 2);
                for (int k = 0; k < nu->nnuc; k++) {
                    float rr = mp_rng_uniformf(&g, 0.0f, 0.45f), aa = 6.2831853f * (float)mp_rng_uniform(&g);
                    nu->nx[k] = rr * nu->a * cosf(aa);
                    nu->ny[k] = rr * nu->b * sinf(aa);
                    nu->nr[k] = mp_rng_uniformf(&g, 0.8f, 1.4f);
                }
            } else {
                nu->a = mp_rng_uniformf(&g, 8.0f, 12.0f);
                nu->b = mp_rng_uniformf(&g, 1.8f, 2.6f);
                /* spindles follow the local fibre direction */
                th = atan2f(f[L_OS], f[L_OC]) + 0.25f * (float)(mp_rng_uniform(&g) - 0.5);
            }
            nu->c = cosf(th), nu->s = sinf(th);
        }
    }
}

static void draw_nucleus(const synth_slide *s, const chunk *ck, const nucleus *nu, synth_scratch *sc)
{
    float mpp = ck->mpp, sig = s->sigma;
    float reach = nu->a * 1.2f + 4.0f * sig; /* outline bumps ≤ 18%, blur tail */
    int px0 = (int)floorf((nu->x - reach) / mpp), px1 = (int)floorf((nu->x + reach) / mpp);
    int py0 = (int)floorf((nu->y - reach) / mpp), py1 = (int)floorf((nu->y + reach) / mpp);
    if (px0 < ck->x0) px0 = ck->x0;
    if (py0 < ck->y0) py0 = ck->y0;
    if (px1 > ck->x0 + ck->w - 1) px1 = ck->x0 + ck->w - 1;
    if (py1 > ck->y0 + ck->h - 1) py1 = ck->y0 + ck->h - 1;
    float ia = 1.0f / nu->a, ib = 1.0f / nu->b, ia2 = ia * ia, ib2 = ib * ib, isig = 1.0f / sig;
    float qlim = 1.2f + 4.0f * sig * ib, qlim2 = qlim * qlim; /* outline bumps + blur, in units of b */
    for (int py = py0; py <= py1; py++) {
        float dy = ((float)py + 0.5f) * mpp - nu->y;
        size_t o = (size_t)(py - ck->y0) * ck->w;
        for (int px = px0; px <= px1; px++) {
            float dx = ((float)px + 0.5f) * mpp - nu->x;
            float lu = nu->c * dx + nu->s * dy, lv = -nu->s * dx + nu->c * dy;
            float qu = lu * ia, qv = lv * ib, q2 = qu * qu + qv * qv;
            if (q2 > qlim2) continue;
            float q = sqrtf(q2), r = 1.0f;
            if (nu->type == SYNTH_TUMOR && q > 1e-4f) {
                float c1 = qu / q, s1 = qv / q, ck1 = c1, sk1 = s1;
                for (int k = 0; k < 3; k++) {
                    float cn = ck1 * c1 - sk1 * s1, sn = sk1 * c1 + ck1 * s1;
                    ck1 = cn, sk1 = sn;
                    r += nu->amp[k] * (ck1 * nu->pc[k] - sk1 * nu->ps[k]);
                }
            }
            float qn = q / r;
            /* first-order distance to the outline: (q − 1) / |∇q| */
            float grad = q > 1e-4f ? sqrtf(lu * lu * ia2 * ia2 + lv * lv * ib2 * ib2) / q : ib;
            float d = (qn - 1.0f) * r / fmaxf(grad, 1e-4f);
            float al = edge_cdf(-d * isig);
            if (al < 1.0f / 512) continue;
            float h, e = 0;
            if (nu->type == SYNTH_LYMPHOCYTE) {
                h = s->h_nuc[SYNTH_LYMPHOCYTE];
            } else if (nu->type == SYNTH_TUMOR) {
                float rim = syn_smoothstep(0.68f, 0.92f, qn);
                h = s->h_nuc[SYNTH_TUMOR] * (H_TUM_IN + (H_TUM_RIM - H_TUM_IN) * rim);
                if (qn < 0.95f) /* vesicular chromatin: pale with coarse speckles */
                    h += 0.22f * (1 - rim) * syn_noise(lu * 0.9f, lv * 0.9f, nu->salt);
                for (int k = 0; k < nu->nnuc; k++) {
                    float ex = lu - nu->nx[k], ey = lv - nu->ny[k];
                    float dn = sqrtf(ex * ex + ey * ey) - nu->nr[k];
                    float an = edge_cdf(-dn * isig);
                    h += 0.75f * an;
                    e += 0.35f * an;
                }
            } else {
                h = s->h_nuc[SYNTH_STROMA];
            }
            sc->hn[o + px - ck->x0] += al * h;
            sc->en[o + px - ck->x0] += al * e;
            float eu = al * s->e_under[nu->type];
            if (eu > sc->cov[o + px - ck->x0]) sc->cov[o + px - ck->x0] = eu;
        }
    }
}

/* Dust specks: irregular grey-brown blobs lying on top of everything, a few per cell. */
typedef struct {
    float x, y, rad, amt;
    uint32_t salt;
} speck;

#define MAX_SPECKS 16

static int dust_specks(const synth_slide *s, int32_t ci, int32_t cj, speck *out)
{
    float cell = SYN_DUST_CELL_UM, lam = (float)s->p.dust_per_mm2 * cell * cell * 1e-6f;
    if (lam <= 0) return 0;
    mp_rng r;
    mp_rng_derive(&r, s->seed, P_DUST, (uint64_t)(uint32_t)ci, (uint64_t)(uint32_t)cj);
    int n = poisson(&r, lam);
    if (n > MAX_SPECKS) n = MAX_SPECKS;
    for (int q = 0; q < n; q++) {
        speck *k = &out[q];
        k->x = ((float)ci + (float)mp_rng_uniform(&r)) * cell;
        k->y = ((float)cj + (float)mp_rng_uniform(&r)) * cell;
        k->rad = 2.0f * expf(2.3f * (float)mp_rng_uniform(&r));
        k->amt = mp_rng_uniformf(&r, 0.4f, 1.6f);
        k->salt = (uint32_t)mp_rng_u64(&r);
    }
    return n;
}

/* signed distance-like margin of a speck at offset (dx, dy): > 0 inside */
static inline float speck_inside(const speck *k, float dx, float dy)
{
    float dist = sqrtf(dx * dx + dy * dy);
    float rr = k->rad * (1 + 0.3f * syn_noise(dx / (0.6f * k->rad), dy / (0.6f * k->rad), k->salt));
    return rr - dist;
}

static void draw_dust(const synth_slide *s, const chunk *ck, synth_scratch *sc, float u0, float v0, float u1, float v1)
{
    float cell = SYN_DUST_CELL_UM;
    if (s->p.dust_per_mm2 <= 0) return;
    int32_t ci0 = (int32_t)floorf((u0 - DUST_MARGIN_UM) / cell), ci1 = (int32_t)floorf((u1 + DUST_MARGIN_UM) / cell);
    int32_t cj0 = (int32_t)floorf((v0 - DUST_MARGIN_UM) / cell), cj1 = (int32_t)floorf((v1 + DUST_MARGIN_UM) / cell);
    float mpp = ck->mpp, isig = 1.0f / fmaxf(s->sigma, 0.8f);
    speck sp[MAX_SPECKS];
    for (int32_t cj = cj0; cj <= cj1; cj++)
        for (int32_t ci = ci0; ci <= ci1; ci++) {
            int n = dust_specks(s, ci, cj, sp);
            for (int q = 0; q < n; q++) {
                const speck *k = &sp[q];
                float od[3] = {0.62f * k->amt, 0.70f * k->amt, 0.80f * k->amt}; /* grey-brown */
                float reach = k->rad * 1.4f + 3.0f;
                int px0 = (int)floorf((k->x - reach) / mpp), px1 = (int)floorf((k->x + reach) / mpp);
                int py0 = (int)floorf((k->y - reach) / mpp), py1 = (int)floorf((k->y + reach) / mpp);
                if (px0 < ck->x0) px0 = ck->x0;
                if (py0 < ck->y0) py0 = ck->y0;
                if (px1 > ck->x0 + ck->w - 1) px1 = ck->x0 + ck->w - 1;
                if (py1 > ck->y0 + ck->h - 1) py1 = ck->y0 + ck->h - 1;
                for (int py = py0; py <= py1; py++) {
                    float dy = ((float)py + 0.5f) * mpp - k->y;
                    for (int px = px0; px <= px1; px++) {
                        float dx = ((float)px + 0.5f) * mpp - k->x;
                        float al = edge_cdf(speck_inside(k, dx, dy) * isig);
                        if (al < 1.0f / 512) continue;
                        size_t o = ((size_t)(py - ck->y0) * ck->w + (px - ck->x0)) * 3;
                        for (int c = 0; c < 3; c++) sc->art[o + c] += al * od[c];
                    }
                }
            }
        }
}

static float seg_dist2(float px, float py, float ax, float ay, float bx, float by)
{
    float vx = bx - ax, vy = by - ay, wx = px - ax, wy = py - ay;
    float l2 = vx * vx + vy * vy, t = l2 > 0 ? (wx * vx + wy * vy) / l2 : 0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    float dx = wx - t * vx, dy = wy - t * vy;
    return dx * dx + dy * dy;
}

/* Pen ink: OD added along a polyline, with streaky density. */
static void draw_pen(const synth_slide *s, const chunk *ck, synth_scratch *sc, float u0, float v0, float u1, float v1)
{
    float mpp = ck->mpp;
    for (int k = 0; k < s->npen; k++) {
        const syn_pen *pn = &s->pen[k];
        float hw = 0.5f * pn->width, reach = hw + 6.0f;
        int segs[SYN_PEN_PTS], ns = 0;
        for (int q = 0; q + 1 < pn->npts; q++) {
            float ax = fminf(pn->x[q], pn->x[q + 1]) - reach, bx = fmaxf(pn->x[q], pn->x[q + 1]) + reach;
            float ay = fminf(pn->y[q], pn->y[q + 1]) - reach, by = fmaxf(pn->y[q], pn->y[q + 1]) + reach;
            if (bx < u0 || ax > u1 || by < v0 || ay > v1) continue;
            segs[ns++] = q;
        }
        if (!ns) continue;
        for (int py = 0; py < ck->h; py++) {
            float v = ((float)(ck->y0 + py) + 0.5f) * mpp;
            for (int px = 0; px < ck->w; px++) {
                float u = ((float)(ck->x0 + px) + 0.5f) * mpp, best = 1e30f;
                for (int q = 0; q < ns; q++) {
                    int g = segs[q];
                    float d2 = seg_dist2(u, v, pn->x[g], pn->y[g], pn->x[g + 1], pn->y[g + 1]);
                    if (d2 < best) best = d2;
                }
                if (best > reach * reach) continue;
                float al = syn_smoothstep(hw + 5.0f, hw - 5.0f, sqrtf(best));
                if (al <= 0) continue;
                float streak = 0.85f + 0.15f * syn_noise(u / 40.0f, v / 40.0f, s->salt ^ P_PEN);
                size_t o = ((size_t)py * ck->w + px) * 3;
                for (int c = 0; c < 3; c++) sc->art[o + c] += al * streak * pn->od[c];
            }
        }
    }
}

static void render_chunk(const synth_slide *s, synth_scratch *sc, int x0, int y0, int w, int h, uint8_t *rgb,
                         size_t stride)
{
    chunk ck = {.x0 = x0, .y0 = y0, .w = w, .h = h, .mpp = (float)s->p.mpp};
    float mpp = ck.mpp;
    float u0 = (float)x0 * mpp, v0 = (float)y0 * mpp, u1 = (float)(x0 + w) * mpp, v1 = (float)(y0 + h) * mpp;
    /* lattice window covering the chunk plus every nucleus that can reach into it */
    /* a nucleus is drawn from every chunk its reach touches, never clipped by enumeration */
    float nuc_margin = NUC_A_MAX * 1.2f + 4.0f * s->sigma + 0.5f;
    float m = nuc_margin + SYN_CELL_UM + SYN_LATTICE_UM;
    ck.li0 = (int32_t)floorf((u0 - m) / SYN_LATTICE_UM);
    ck.lj0 = (int32_t)floorf((v0 - m) / SYN_LATTICE_UM);
    ck.lnx = (int32_t)floorf((u1 + m) / SYN_LATTICE_UM) - ck.li0 + 2;
    ck.lny = (int32_t)floorf((v1 + m) / SYN_LATTICE_UM) - ck.lj0 + 2;
    int nl = ck.lnx * ck.lny;
    if (nl > sc->lat_cap) {
        sc->lat_cap = nl;
        sc->lat = mp_xrealloc(sc->lat, sizeof(float) * L_N * nl);
    }
    if (ck.lnx > sc->row_cap) {
        sc->row_cap = ck.lnx;
        sc->row = mp_xrealloc(sc->row, sizeof(float) * L_N * ck.lnx);
    }
    int any_tissue = 0;
    for (int j = 0; j < ck.lny; j++)
        for (int i = 0; i < ck.lnx; i++) {
            float *o = sc->lat + ((size_t)j * ck.lnx + i) * L_N;
            syn_lattice_eval(s, ck.li0 + i, ck.lj0 + j, o);
            if (o[L_F] > -12.0f) any_tissue = 1;
        }

    size_t npx = (size_t)w * h;
    memset(sc->hn, 0, sizeof(float) * npx);
    memset(sc->cov, 0, sizeof(float) * npx);
    memset(sc->en, 0, sizeof(float) * npx);
    memset(sc->art, 0, sizeof(float) * npx * 3);
    if (any_tissue) {
        sc->nuc_n = 0;
        int32_t ci0 = (int32_t)floorf((u0 - nuc_margin) / SYN_CELL_UM);
        int32_t ci1 = (int32_t)floorf((u1 + nuc_margin) / SYN_CELL_UM);
        int32_t cj0 = (int32_t)floorf((v0 - nuc_margin) / SYN_CELL_UM);
        int32_t cj1 = (int32_t)floorf((v1 + nuc_margin) / SYN_CELL_UM);
        /* row-major cell order: a pixel sums its nuclei in the same order in any chunk */
        for (int32_t cj = cj0; cj <= cj1; cj++)
            for (int32_t ci = ci0; ci <= ci1; ci++) cell_nuclei(s, &ck, sc->lat, ci, cj, sc);
        for (int k = 0; k < sc->nuc_n; k++) draw_nucleus(s, &ck, &sc->nuc[k], sc);
    }
    if (!s->p.full_tissue) {
        draw_pen(s, &ck, sc, u0, v0, u1, v1);
        draw_dust(s, &ck, sc, u0, v0, u1, v1);
    }

    const float *H = s->hvec, *E = s->evec;
    uint32_t salt = s->salt;
    for (int py = 0; py < h; py++) {
        int y = y0 + py;
        float v = ((float)y + 0.5f) * mpp;
        /* interpolate the lattice along y once per row */
        float gy = v / SYN_LATTICE_UM - (float)ck.lj0;
        int j = (int)gy;
        if (j > ck.lny - 2) j = ck.lny - 2;
        float fy = gy - (float)j;
        const float *ra = sc->lat + (size_t)j * ck.lnx * L_N, *rb = ra + (size_t)ck.lnx * L_N;
        for (int k = 0; k < ck.lnx * L_N; k++) sc->row[k] = ra[k] + (rb[k] - ra[k]) * fy;
        uint8_t *out = rgb + (size_t)py * stride;
        size_t o = (size_t)py * w;
        for (int px = 0; px < w; px++) {
            int x = x0 + px;
            float u = ((float)x + 0.5f) * mpp;
            float gx = u / SYN_LATTICE_UM - (float)ck.li0;
            int i = (int)gx;
            if (i > ck.lnx - 2) i = ck.lnx - 2;
            float fx = gx - (float)i;
            const float *la = sc->row + (size_t)i * L_N, *lb = la + L_N;
            float L[L_N];
            L[L_F] = la[L_F] + (lb[L_F] - la[L_F]) * fx;
            L[L_BJ] = la[L_BJ] + (lb[L_BJ] - la[L_BJ]) * fx;

            float f = L[L_F], alpha;
            if (f > 9.0f) alpha = 1.0f;
            else if (f < -9.0f) alpha = 0.0f;
            else alpha = syn_smoothstep(-2.5f, 2.5f, f + 3.0f * syn_noise(u * (1 / 17.0f), v * (1 / 17.0f), salt ^ P_EDGE) +
                                                         1.2f * syn_noise(u * (1 / 5.0f), v * (1 / 5.0f), salt ^ (P_EDGE + 100)));
            const float *art = sc->art + (o + px) * 3;
            float wht = GLASS_WHITE * s->bright * (1 + s->jb * L[L_BJ]);
            uint32_t hz = syn_hash(x, y, salt ^ P_PIXEL);
            float T[3];
            if (alpha > 0 || art[0] > 0 || art[1] > 0 || art[2] > 0) {
                float od[3] = {GLASS_OD_R, GLASS_OD_G, GLASS_OD_B};
                if (alpha > 0) {
                    for (int k = L_SLOW; k < L_N; k++) L[k] = la[k] + (lb[k] - la[k]) * fx;
                    /* fibres: noise stretched along the local orientation */
                    float al = L[L_OC] * u + L[L_OS] * v, ac = -L[L_OS] * u + L[L_OC] * v;
                    float fib = 0.75f * syn_noise(al * (1 / 28.0f), ac * (1 / 2.4f), salt ^ P_FIBRE1) +
                                0.35f * syn_noise(al * (1 / 11.0f), ac * (1 / 1.3f), salt ^ P_FIBRE2);
                    float e = E_STROMA * (1 + 0.13f * fib) * (1 + 0.08f * L[L_SLOW]);
                    float hb = H_STROMA;
                    /* pale gaps: the fine octave only matters near the threshold (|noise| < 1.15) */
                    float gap = syn_noise(u * (1 / 45.0f), v * (1 / 45.0f), salt ^ P_GAP1), g = 0;
                    if (gap > 0.55f - 0.35f * 1.15f) {
                        gap += 0.35f * syn_noise(u * (1 / 14.0f), v * (1 / 14.0f), salt ^ P_GAP2);
                        g = syn_smoothstep(0.55f, 0.7f, gap);
                    }
                    e *= 1 - 0.75f * g;
                    hb *= 1 - 0.75f * g;
                    float cov = sc->cov[o + px];
                    e = e * (1 - cov) + sc->en[o + px];
                    float hh = hb + sc->hn[o + px];
                    hh *= s->hscale * fmaxf(1 + s->ja * L[L_HJ], 0.3f);
                    e *= s->escale * fmaxf(1 + s->ja * L[L_EJ], 0.3f);
                    if (s->jv > 0) { /* local stain vectors */
                        float h3[3], e3[3], hn = 0, en = 0;
                        for (int c = 0; c < 3; c++) {
                            h3[c] = fmaxf(H[c] + s->jv * L[L_H0 + c], 0.02f);
                            e3[c] = fmaxf(E[c] + s->jv * L[L_E0 + c], 0.02f);
                            hn += h3[c] * h3[c], en += e3[c] * e3[c];
                        }
                        hh /= sqrtf(hn), e /= sqrtf(en);
                        for (int c = 0; c < 3; c++) od[c] += alpha * (hh * h3[c] + e * e3[c]);
                    } else {
                        for (int c = 0; c < 3; c++) od[c] += alpha * (hh * H[c] + e * E[c]);
                    }
                }
                for (int c = 0; c < 3; c++) T[c] = trans(od[c] + art[c]);
            } else {
                T[0] = glass_t[0], T[1] = glass_t[1], T[2] = glass_t[2];
            }
            for (int c = 0; c < 3; c++) {
                /* sensor noise: triangular, about ±1.5 levels */
                float nz = ((float)((hz >> (8 * c)) & 255) + (float)((hz >> (8 * c + 8)) & 255) - 255.0f) * (1.5f / 255.0f);
                float val = wht * T[c] + nz;
                val = val < 0 ? 0 : val > 255 ? 255 : val;
                out[3 * px + c] = (uint8_t)(val + 0.5f);
            }
        }
    }
}

void synth_render(const synth_slide *s, synth_scratch *sc, int x, int y, int w, int h, uint8_t *rgb, size_t stride)
{
    for (int cy = 0; cy < h; cy += CHUNK)
        for (int cx = 0; cx < w; cx += CHUNK) {
            int cw = w - cx < CHUNK ? w - cx : CHUNK, ch = h - cy < CHUNK ? h - cy : CHUNK;
            render_chunk(s, sc, x + cx, y + cy, cw, ch, rgb + (size_t)cy * stride + (size_t)cx * 3, stride);
        }
}

int synth_artifact_at(const synth_slide *s, double x, double y)
{
    if (s->p.full_tissue) return 0;
    float u = (float)((x) * s->p.mpp), v = (float)((y) * s->p.mpp);
    /* dust lies on top, so it wins where both are */
    float cell = SYN_DUST_CELL_UM;
    int32_t ci = (int32_t)floorf(u / cell), cj = (int32_t)floorf(v / cell);
    speck sp[MAX_SPECKS];
    for (int32_t j = cj - 1; j <= cj + 1; j++)
        for (int32_t i = ci - 1; i <= ci + 1; i++) {
            int n = dust_specks(s, i, j, sp);
            for (int q = 0; q < n; q++)
                if (speck_inside(&sp[q], u - sp[q].x, v - sp[q].y) > 0) return 2;
        }
    for (int k = 0; k < s->npen; k++) {
        const syn_pen *pn = &s->pen[k];
        float hw = 0.5f * pn->width;
        for (int q = 0; q + 1 < pn->npts; q++)
            if (seg_dist2(u, v, pn->x[q], pn->y[q], pn->x[q + 1], pn->y[q + 1]) < hw * hw) return 1;
    }
    return 0;
}
