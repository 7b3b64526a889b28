/* synth/internal.h — what the synth/ sources share: the slide layout, hashing and gradient noise.
 * Every random quantity is a hash of (slide seed, purpose, integer position), never a stream
 * position, so a pixel's value does not depend on which rectangle asked for it. */
#ifndef MP_SYNTH_INTERNAL_H
#define MP_SYNTH_INTERNAL_H

#include <math.h>
#include <stdint.h>

#include "synth/synth.h"

/* The slide as a lazy libvips image (uchar sRGB, resolution = 1/mpp) whose pixels are rendered
 * on demand by libvips' worker threads; caller unrefs. The slide must outlive the image.
 * Initialises libvips if needed. NULL + mp_err on failure. */
struct _VipsImage;
struct _VipsImage *synth_image_new(const synth_slide *s);

/* Purposes: salts for hashes and derived RNG streams. */
enum {
    P_LAYOUT = 1, P_NUCLEI, P_REGION, P_WARP_U, P_WARP_V, P_FIELD, P_SLOW, P_HJIT, P_EJIT, P_BJIT,
    P_ORIENT, P_FIBRE1, P_FIBRE2, P_GAP1, P_GAP2, P_EDGE, P_PIXEL, P_DUST, P_SPECK, P_PEN, P_CHROM,
    P_VJIT /* + 0..5: stain vector components */
};

#define SYN_LATTICE_UM 16.0f /* spacing of the slowly varying fields (tissue, stain jitter) */
#define SYN_CELL_UM 16.0f    /* nuclei are placed per cell of this size */
#define SYN_DUST_CELL_UM 250.0f
#define SYN_MAX_ISLANDS 8
#define SYN_MAX_PEN 3
#define SYN_PEN_PTS 64
#define SYN_FIELD_FLOOR (-150.0f) /* tissue field clamp far from every island (µm) */

/* Fields held on the lattice and interpolated bilinearly per pixel: tissue field, slow eosin
 * variation, brightness jitter, fibre orientation, stain amount and stain vector jitter. */
enum { L_F, L_BJ, L_SLOW, L_OC, L_OS, L_HJ, L_EJ, L_H0, L_H1, L_H2, L_E0, L_E1, L_E2, L_N };

#define SYN_NOISE_SD_INV 2.95f /* syn_noise has standard deviation ≈ 0.34 */

typedef struct {
    float cx, cy, R, rmax;
    float amp[4], pc[4], ps[4]; /* harmonics k = 2..5 of the outline */
} syn_island;

typedef struct {
    float od[3];
    float width;
    int npts;
    float x[SYN_PEN_PTS], y[SYN_PEN_PTS];
} syn_pen;

struct synth_slide {
    synth_params p;
    int index, dominant;
    uint32_t salt;      /* 32-bit slide key for noise */
    uint64_t seed;      /* slide seed for RNG streams */
    float wu, hu;       /* slide size in µm */
    float hvec[3], evec[3];
    float hscale, escale, bright; /* per-slide stain jitter */
    float jv, ja, jb;             /* spatial jitter sd: stain vectors, amounts, brightness */
    float sigma;        /* nuclear edge blur in µm, widened for coarse pixels */
    float lambda[SYNTH_NTYPES]; /* nuclei per µm² for a region of that type */
    float e_under[SYNTH_NTYPES]; /* share of eosin removed under a nucleus of that type */
    float h_nuc[SYNTH_NTYPES];   /* nuclear hematoxylin (tumour: scales rim and interior) */
    float jmax;         /* cap of the per-region density factor */
    int nisl;
    syn_island isl[SYN_MAX_ISLANDS];
    float field_amp, field_scale;
    int npen;
    syn_pen pen[SYN_MAX_PEN];
};

static inline uint32_t syn_h32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* One mixing round over a linear combination: cheap enough for per-pixel noise. */
static inline uint32_t syn_hash(int32_t x, int32_t y, uint32_t salt)
{
    return syn_h32((uint32_t)x * 0x8DA6B343U + (uint32_t)y * 0xD8163841U + salt * 0xCB1AB31FU);
}

static inline float syn_u01(uint32_t h) { return (h >> 8) * (1.0f / 16777216.0f); }

/* 2-D gradient noise, roughly in [-1, 1], smooth at the scale of one lattice unit. */
static inline __attribute__((always_inline)) float syn_noise(float x, float y, uint32_t salt)
{
    /* floor without SSE4.1: truncate, then step down for negatives */
    int32_t ix = (int32_t)x, iy = (int32_t)y;
    ix -= x < (float)ix;
    iy -= y < (float)iy;
    float fx = x - (float)ix, fy = y - (float)iy;
    float u = fx * fx * fx * (fx * (fx * 6.0f - 15.0f) + 10.0f);
    float v = fy * fy * fy * (fy * (fy * 6.0f - 15.0f) + 10.0f);
    /* gradients from 8 directions keep the table-free code short */
    static const float gx[8] = {1, -1, 0, 0, 0.7071f, -0.7071f, 0.7071f, -0.7071f};
    static const float gy[8] = {0, 0, 1, -1, 0.7071f, 0.7071f, -0.7071f, -0.7071f};
    uint32_t h00 = syn_hash(ix, iy, salt) & 7, h10 = syn_hash(ix + 1, iy, salt) & 7;
    uint32_t h01 = syn_hash(ix, iy + 1, salt) & 7, h11 = syn_hash(ix + 1, iy + 1, salt) & 7;
    float n00 = gx[h00] * fx + gy[h00] * fy;
    float n10 = gx[h10] * (fx - 1) + gy[h10] * fy;
    float n01 = gx[h01] * fx + gy[h01] * (fy - 1);
    float n11 = gx[h11] * (fx - 1) + gy[h11] * (fy - 1);
    float a = n00 + (n10 - n00) * u, b = n01 + (n11 - n01) * u;
    return 1.6f * (a + (b - a) * v);
}

static inline float syn_smoothstep(float e0, float e1, float x)
{
    float t = (x - e0) / (e1 - e0);
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return t * t * (3 - 2 * t);
}

/* Calibrated per-type constants (layout.c): nuclei per 224x224 µm patch, eosin removed under
 * a nucleus. bench/synth/calibrate re-derives them. */
extern const float syn_type_count[SYNTH_NTYPES], syn_type_e_under[SYNTH_NTYPES], syn_type_h[SYNTH_NTYPES];

/* layout.c */
float syn_field_f(const synth_slide *s, int32_t i, int32_t j);   /* tissue field at lattice point */
void syn_lattice_eval(const synth_slide *s, int32_t i, int32_t j, float out[L_N]);
/* class index (0-based) of the region at µm point (u, v); *rid gets a region key */
int syn_region_at(const synth_slide *s, float u, float v, uint32_t *rid);
float syn_region_density(const synth_slide *s, uint32_t rid);    /* density jitter factor */
/* bilinear tissue field at a µm point (same values the renderer interpolates) */
float syn_tissue_at(const synth_slide *s, float u, float v);

#endif
