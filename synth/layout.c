/* synth/layout.c — parameters and the per-slide layout: tissue islands, class regions
 * (warped Voronoi cells), stain, pen strokes. Everything here is analytic in µm so the
 * renderer and the ground truth evaluate the very same functions. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"
#include "common/rng.h"
#include "common/util.h"
#include "synth/internal.h"

#define PI_F 3.14159265f

static const char *type_names[SYNTH_NTYPES] = {"lymphocyte", "tumor", "stroma"};
static const char *type_labels[SYNTH_NTYPES] = {"Lymphocyte", "Tumor", "Stroma"};
/* QuPath's defaults for Immune cells, Tumor, Stroma */
static const int type_colors[SYNTH_NTYPES][3] = {{160, 90, 160}, {200, 0, 0}, {150, 200, 150}};

/* Nuclei per 224x224 µm patch, calibrated (bench/synth/calibrate) so that the class mean
 * colour at 1.25x matches within 1.5/255 with the stain constants of render.c. */
const float syn_type_count[SYNTH_NTYPES] = {177.0f, 54.6f, 80.4f};
const float syn_type_e_under[SYNTH_NTYPES] = {0.8f, 0.3f, 0.8f};
const float syn_type_h[SYNTH_NTYPES] = {1.6f, 1.0f, 1.6f};

const char *synth_type_name(synth_type t) { return t < SYNTH_NTYPES ? type_names[t] : "?"; }

void synth_type_color(synth_type t, int rgb[3])
{
    for (int c = 0; c < 3; c++) rgb[c] = t < SYNTH_NTYPES ? type_colors[t][c] : 128;
}

void synth_params_default(synth_params *p)
{
    memset(p, 0, sizeof *p);
    p->width = 16384;
    p->height = 12288;
    p->mpp = 0.25;
    p->seed = 1;
    p->nclasses = 3;
    for (int k = 0; k < 3; k++) {
        p->types[k] = (synth_type)k;
        snprintf(p->names[k], SYNTH_NAME_MAX, "%s", type_labels[k]);
    }
    synth_nuisance_preset(p, "mild");
    p->region_um = 600;
    p->purity = 0.6;
    p->pen_prob = 0.5;
    p->dust_per_mm2 = 1.0;
    p->uniform_class = -1;
}

int synth_nuisance_preset(synth_params *p, const char *name)
{
    if (!strcmp(name, "none")) {
        p->mix = 0, p->density_jitter = 0, p->stain_jitter = 0;
    } else if (!strcmp(name, "mild")) {
        p->mix = 0.10, p->density_jitter = 0.2, p->stain_jitter = 0.5;
    } else if (!strcmp(name, "strong")) {
        p->mix = 0.15, p->density_jitter = 0.3, p->stain_jitter = 1.0;
    } else {
        return mp_err_set("--nuisance %s: expected none, mild or strong", name);
    }
    return 0;
}

static int parse_type(const char *s, size_t n, synth_type *t)
{
    static const struct { const char *name; synth_type t; } alias[] = {
        {"lymphocyte", SYNTH_LYMPHOCYTE}, {"lymphocytes", SYNTH_LYMPHOCYTE}, {"immune", SYNTH_LYMPHOCYTE},
        {"tumor", SYNTH_TUMOR}, {"tumour", SYNTH_TUMOR}, {"stroma", SYNTH_STROMA}};
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
        if (strlen(alias[i].name) == n && !strncasecmp(s, alias[i].name, n)) {
            *t = alias[i].t;
            return 0;
        }
    return -1;
}

int synth_parse_classes(synth_params *p, const char *list)
{
    int k = 0;
    const char *s = list;
    while (1) {
        const char *end = strchr(s, ',');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        const char *colon = memchr(s, ':', n);
        size_t tn = colon ? (size_t)(colon - s) : n;
        synth_type t;
        if (k >= SYNTH_MAX_CLASSES)
            return mp_err_set("--classes %s: at most %d classes (one per type)", list, SYNTH_MAX_CLASSES);
        if (parse_type(s, tn, &t))
            return mp_err_set("--classes %s: unknown type '%.*s' (expected lymphocyte, tumor or stroma)", list,
                              (int)tn, s);
        for (int j = 0; j < k; j++)
            if (p->types[j] == t) return mp_err_set("--classes %s: type %s given twice", list, type_names[t]);
        p->types[k] = t;
        if (colon) {
            size_t nn = n - tn - 1;
            if (nn == 0 || nn >= SYNTH_NAME_MAX)
                return mp_err_set("--classes %s: class name must be 1-%d characters", list, SYNTH_NAME_MAX - 1);
            for (size_t i = 0; i < nn; i++)
                if (iscntrl((unsigned char)colon[1 + i]))
                    return mp_err_set("--classes %s: control character in a class name", list);
            memcpy(p->names[k], colon + 1, nn);
            p->names[k][nn] = 0;
        } else {
            snprintf(p->names[k], SYNTH_NAME_MAX, "%s", type_labels[t]);
        }
        k++;
        if (!end) break;
        s = end + 1;
    }
    if (k < 2) return mp_err_set("--classes %s: need at least 2 classes", list);
    for (int i = 0; i < k; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(p->names[i], p->names[j])) return mp_err_set("--classes %s: name '%s' given twice", list, p->names[i]);
    p->nclasses = k;
    return 0;
}

int synth_params_check(const synth_params *p)
{
    if (!(p->mpp >= 0.05 && p->mpp <= 20)) return mp_err_set("--mpp %g: must be between 0.05 and 20 µm/px", p->mpp);
    if (p->width < 64 || p->height < 64 || p->width > 1000000 || p->height > 1000000)
        return mp_err_set("--width/--height %dx%d: each must be between 64 and 1000000 pixels", p->width, p->height);
    /* coordinates are float µm: keep their resolution well below a pixel */
    if ((double)p->width * p->mpp > 300000 || (double)p->height * p->mpp > 300000)
        return mp_err_set("--width/--height %dx%d at %g µm/px: slides are limited to 300 mm a side", p->width,
                          p->height, p->mpp);
    if (p->nclasses < 2 || p->nclasses > SYNTH_MAX_CLASSES) return mp_err_set("--classes: need 2 or 3 classes");
    if (!(p->mix >= 0 && p->mix <= 1)) return mp_err_set("--mix %g: must be between 0 and 1", p->mix);
    if (!(p->density_jitter >= 0 && p->density_jitter <= 1))
        return mp_err_set("--density-jitter %g: must be between 0 and 1", p->density_jitter);
    if (!(p->stain_jitter >= 0 && p->stain_jitter <= 3))
        return mp_err_set("--stain-jitter %g: must be between 0 and 3", p->stain_jitter);
    if (!(p->region_um >= 50 && p->region_um <= 20000))
        return mp_err_set("--region-size %g: must be between 50 and 20000 µm", p->region_um);
    if (!(p->purity >= 0 && p->purity <= 1)) return mp_err_set("--purity %g: must be between 0 and 1", p->purity);
    if (!(p->pen_prob >= 0 && p->pen_prob <= 1)) return mp_err_set("--pen %g: must be between 0 and 1", p->pen_prob);
    if (!(p->dust_per_mm2 >= 0 && p->dust_per_mm2 <= 1000))
        return mp_err_set("--dust %g: must be between 0 and 1000 per mm²", p->dust_per_mm2);
    return 0;
}

static void unit3(float v[3])
{
    float n = sqrtf(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    for (int c = 0; c < 3; c++) v[c] /= n;
}

static float clampf(float x, float lo, float hi) { return x < lo ? lo : x > hi ? hi : x; }

synth_slide *synth_slide_new(const synth_params *p, int index, int dominant)
{
    synth_slide *s = mp_xcalloc(1, sizeof *s);
    mp_rng r;
    s->p = *p;
    s->index = index;
    s->seed = mp_hash64(p->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)index + 1);
    s->salt = (uint32_t)(s->seed ^ (s->seed >> 32));
    mp_rng_derive(&r, s->seed, P_LAYOUT, 0, 0);
    s->dominant = dominant >= 0 ? dominant % p->nclasses : (int)mp_rng_below(&r, (uint32_t)p->nclasses);
    s->wu = (float)(p->width * p->mpp);
    s->hu = (float)(p->height * p->mpp);

    /* Stain: Macenko's reference H and E optical-density vectors. The jitter (SYNTH.md: stain
     * vectors, amounts, brightness) is split evenly between a per-slide draw and a field that
     * varies over ~300 µm, so patches of one slide differ too, as in the per-patch prototype.
     * At --stain-jitter 1 (each half at sd/√2): vector components sd 0.05, amounts sd 15%,
     * brightness sd 3% (slide) and 1% (field: scanner illumination drifts less than staining). */
    static const float H0[3] = {0.5626f, 0.7201f, 0.4062f}, E0[3] = {0.2159f, 0.8012f, 0.5581f};
    float sj = (float)p->stain_jitter * 0.7071f;
    for (int c = 0; c < 3; c++) {
        s->hvec[c] = clampf(H0[c] + 0.05f * sj * (float)mp_rng_normal(&r), 0.02f, 1.0f);
        s->evec[c] = clampf(E0[c] + 0.05f * sj * (float)mp_rng_normal(&r), 0.02f, 1.0f);
    }
    unit3(s->hvec);
    unit3(s->evec);
    s->hscale = expf(0.15f * sj * clampf((float)mp_rng_normal(&r), -2.5f, 2.5f));
    s->escale = expf(0.15f * sj * clampf((float)mp_rng_normal(&r), -2.5f, 2.5f));
    s->bright = 1.0f + 0.03f * sj * clampf((float)mp_rng_normal(&r), -2.5f, 2.5f);
    s->jv = 0.05f * sj;
    s->ja = 0.15f * sj;
    s->jb = 0.01f * sj;
    /* Edge blur: optics σ 0.52 µm plus the pixel footprint (box of mpp: variance mpp²/12), so a
     * 10x pixel sees σ ≈ 0.6 px (SYNTH.md) whether rendered at 10x or averaged down from 40x,
     * and coarse pixels do not alias. */
    float pix = (float)p->mpp;
    s->sigma = sqrtf(0.52f * 0.52f + pix * pix / 12.0f);
    for (int t = 0; t < SYNTH_NTYPES; t++) {
        s->lambda[t] = syn_type_count[t] / (224.0f * 224.0f);
        s->e_under[t] = syn_type_e_under[t];
        s->h_nuc[t] = syn_type_h[t];
    }
    s->jmax = expf(2.5f * (float)p->density_jitter);

    /* Tissue islands: a few large blobs in slots along the long side, plus small fragments. */
    if (!p->full_tissue) {
        /* main islands in a grid of slots that fits the slide's aspect ratio */
        int nmain = 1 + (int)mp_rng_below(&r, 3);
        int cols = (int)ceil(sqrt(nmain * (double)s->wu / s->hu));
        if (cols < 1) cols = 1;
        if (cols > nmain) cols = nmain;
        int rows = (nmain + cols - 1) / cols;
        float sw = s->wu / cols, sh = s->hu / rows, rbase = 0.44f * fminf(sw, sh);
        for (int i = 0; i < nmain; i++) {
            syn_island *is = &s->isl[s->nisl++];
            is->cx = sw * ((float)(i % cols) + 0.5f + 0.1f * (float)(mp_rng_uniform(&r) - 0.5));
            is->cy = sh * ((float)(i / cols) + 0.5f + 0.1f * (float)(mp_rng_uniform(&r) - 0.5));
            is->R = rbase * (0.85f + 0.15f * (float)mp_rng_uniform(&r));
        }
        int nfrag = (int)mp_rng_below(&r, 4);
        for (int i = 0; i < nfrag && s->nisl < SYN_MAX_ISLANDS; i++) {
            syn_island *is = &s->isl[s->nisl++];
            is->R = rbase * (0.06f + 0.1f * (float)mp_rng_uniform(&r));
            is->cx = is->R + (s->wu - 2 * is->R) * (float)mp_rng_uniform(&r);
            is->cy = is->R + (s->hu - 2 * is->R) * (float)mp_rng_uniform(&r);
        }
        for (int i = 0; i < s->nisl; i++) {
            syn_island *is = &s->isl[i];
            float sum = 0;
            for (int k = 0; k < 4; k++) {
                float ph = 2 * PI_F * (float)mp_rng_uniform(&r);
                is->amp[k] = (0.22f / (k + 1)) * (0.3f + 0.7f * (float)mp_rng_uniform(&r));
                is->pc[k] = cosf(ph);
                is->ps[k] = sinf(ph);
                sum += is->amp[k];
            }
            is->rmax = is->R * (1 + sum);
        }
        s->field_amp = fminf(0.12f * rbase, 120.0f);
        s->field_scale = fmaxf(0.3f * rbase, 50.0f);

        /* Pen strokes: wobbly arcs drawn around an island, like a pathologist's circling. */
        if (mp_rng_uniform(&r) < p->pen_prob) {
            static const float ink[3][3] = {{1.10f, 0.22f, 0.95f}, {1.05f, 0.55f, 0.08f}, {1.45f, 1.40f, 1.30f}};
            int npen = 1 + (int)mp_rng_below(&r, 2);
            for (int k = 0; k < npen; k++) {
                syn_pen *pn = &s->pen[s->npen++];
                const syn_island *is = &s->isl[mp_rng_below(&r, (uint32_t)nmain)];
                int col = (int)mp_rng_below(&r, 3);
                float amt = 0.8f + 0.5f * (float)mp_rng_uniform(&r);
                for (int c = 0; c < 3; c++) pn->od[c] = ink[col][c] * amt;
                pn->width = clampf(150.0f + 200.0f * (float)mp_rng_uniform(&r), 20.0f,
                                   fmaxf(20.0f, 0.03f * fminf(s->wu, s->hu)));
                float rad = is->rmax * (1.05f + 0.25f * (float)mp_rng_uniform(&r));
                float a0 = 2 * PI_F * (float)mp_rng_uniform(&r), span = 1.2f + 3.5f * (float)mp_rng_uniform(&r);
                float w1 = 2 * PI_F * (float)mp_rng_uniform(&r), w2 = 2 * PI_F * (float)mp_rng_uniform(&r);
                pn->npts = SYN_PEN_PTS;
                for (int q = 0; q < SYN_PEN_PTS; q++) {
                    float t = (float)q / (SYN_PEN_PTS - 1), a = a0 + span * t;
                    float rr = rad * (1 + 0.06f * sinf(3 * a + w1) + 0.03f * sinf(7 * a + w2));
                    pn->x[q] = is->cx + rr * cosf(a);
                    pn->y[q] = is->cy + rr * sinf(a);
                }
            }
        }
    }
    return s;
}

void synth_slide_free(synth_slide *s) { free(s); }

const synth_params *synth_slide_params(const synth_slide *s) { return &s->p; }

float syn_field_f(const synth_slide *s, int32_t i, int32_t j)
{
    if (s->p.full_tissue) return 1000.0f;
    float u = (float)i * SYN_LATTICE_UM, v = (float)j * SYN_LATTICE_UM;
    float best = SYN_FIELD_FLOOR;
    for (int k = 0; k < s->nisl; k++) {
        const syn_island *is = &s->isl[k];
        float dx = u - is->cx, dy = v - is->cy;
        float r = sqrtf(dx * dx + dy * dy);
        if (r - is->rmax >= best) continue; /* cannot beat the current best */
        float rad = is->R;
        if (r > 1e-3f) {
            /* cos/sin of k·θ by recurrence from the unit direction */
            float c1 = dx / r, s1 = dy / r, ck = c1, sk = s1;
            float sum = 0;
            for (int h = 0; h < 4; h++) {
                float cn = ck * c1 - sk * s1, sn = sk * c1 + ck * s1; /* harmonic h+2 */
                ck = cn, sk = sn;
                sum += is->amp[h] * (ck * is->pc[h] - sk * is->ps[h]);
            }
            rad = is->R * (1 + sum);
        }
        if (rad - r > best) best = rad - r;
    }
    return best + s->field_amp * syn_noise(u / s->field_scale, v / s->field_scale, s->salt ^ P_FIELD);
}

void syn_lattice_eval(const synth_slide *s, int32_t i, int32_t j, float out[L_N])
{
    float u = (float)i * SYN_LATTICE_UM, v = (float)j * SYN_LATTICE_UM;
    out[L_F] = syn_field_f(s, i, j);
    out[L_SLOW] = syn_noise(u / 250.0f, v / 250.0f, s->salt ^ P_SLOW);
    float th = PI_F * (syn_noise(u / 500.0f, v / 500.0f, s->salt ^ P_ORIENT) +
                       0.4f * syn_noise(u / 150.0f, v / 150.0f, s->salt ^ (P_ORIENT + 100)));
    out[L_OC] = cosf(th);
    out[L_OS] = sinf(th);
    /* jitter fields with unit standard deviation; zero when there is no stain jitter */
    int on = s->jv > 0;
    float k = SYN_NOISE_SD_INV, us = u / 300.0f, vs = v / 300.0f;
    out[L_BJ] = on ? k * syn_noise(u / 2000.0f, v / 2000.0f, s->salt ^ P_BJIT) : 0;
    out[L_HJ] = on ? k * syn_noise(us, vs, s->salt ^ P_HJIT) : 0;
    out[L_EJ] = on ? k * syn_noise(us, vs, s->salt ^ P_EJIT) : 0;
    for (int c = 0; c < 6; c++) out[L_H0 + c] = on ? k * syn_noise(us, vs, s->salt ^ (P_VJIT + c)) : 0;
}

float syn_tissue_at(const synth_slide *s, float u, float v)
{
    float gx = u / SYN_LATTICE_UM, gy = v / SYN_LATTICE_UM;
    float fx0 = floorf(gx), fy0 = floorf(gy);
    int32_t i = (int32_t)fx0, j = (int32_t)fy0;
    float fx = gx - fx0, fy = gy - fy0;
    float a = syn_field_f(s, i, j), b = syn_field_f(s, i + 1, j);
    float c = syn_field_f(s, i, j + 1), d = syn_field_f(s, i + 1, j + 1);
    float top = a + (b - a) * fx, bot = c + (d - c) * fx;
    return top + (bot - top) * fy;
}

/* Region class from its key: the dominant class with probability purity, else another. */
static int region_class(const synth_slide *s, uint32_t rid)
{
    int K = s->p.nclasses;
    if (s->p.uniform_class >= 0) return s->p.uniform_class % K;
    uint32_t h = syn_h32(rid ^ 0x51ED270BU);
    if (syn_u01(h) < s->p.purity) return s->dominant;
    int o = (int)(syn_h32(h) % (uint32_t)(K - 1));
    return o >= s->dominant ? o + 1 : o;
}

int syn_region_at(const synth_slide *s, float u, float v, uint32_t *rid)
{
    float S = (float)s->p.region_um;
    /* domain warp makes the Voronoi edges irregular */
    float wu = u + 0.30f * S * (syn_noise(u / (0.9f * S), v / (0.9f * S), s->salt ^ P_WARP_U) +
                                0.35f * syn_noise(u / (0.3f * S), v / (0.3f * S), s->salt ^ (P_WARP_U + 100)));
    float wv = v + 0.30f * S * (syn_noise(u / (0.9f * S), v / (0.9f * S), s->salt ^ P_WARP_V) +
                                0.35f * syn_noise(u / (0.3f * S), v / (0.3f * S), s->salt ^ (P_WARP_V + 100)));
    int32_t gi = (int32_t)floorf(wu / S), gj = (int32_t)floorf(wv / S);
    float best = 1e30f;
    uint32_t bid = 0;
    for (int dj = -1; dj <= 1; dj++)
        for (int di = -1; di <= 1; di++) {
            uint32_t h = syn_hash(gi + di, gj + dj, s->salt ^ P_REGION);
            float sx = ((float)(gi + di) + 0.1f + 0.8f * syn_u01(h)) * S;
            float sy = ((float)(gj + dj) + 0.1f + 0.8f * syn_u01(syn_h32(h))) * S;
            float d = (sx - wu) * (sx - wu) + (sy - wv) * (sy - wv);
            if (d < best) best = d, bid = h;
        }
    if (rid) *rid = bid;
    return region_class(s, bid);
}

float syn_region_density(const synth_slide *s, uint32_t rid)
{
    if (s->p.density_jitter <= 0) return 1.0f;
    uint32_t h1 = syn_h32(rid ^ 0xA3C59AC3U), h2 = syn_h32(h1);
    /* Box–Muller from two hashes */
    float u1 = fmaxf(syn_u01(h1), 1e-7f), u2 = syn_u01(h2);
    float z = sqrtf(-2 * logf(u1)) * cosf(2 * PI_F * u2);
    return fminf(expf((float)s->p.density_jitter * z), s->jmax);
}

int synth_label_at(const synth_slide *s, double x, double y)
{
    float u = (float)(x * s->p.mpp), v = (float)(y * s->p.mpp);
    if (x < 0 || y < 0 || x >= s->p.width || y >= s->p.height) return 0;
    if (syn_tissue_at(s, u, v) <= 0) return 0;
    return syn_region_at(s, u, v, NULL) + 1;
}
