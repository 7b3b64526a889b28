-- db/schema.sql — the magpie dataset, version 4 (PRAGMA user_version).
-- One SQLite file: slides, their tissue masks, patches with QC scores, one JPEG/PNG image per
-- patch per magnification, labels, splits. Readable from any SQLite client without magpie.
-- Migrations: db/db.c applies this file to an empty database and later steps by user_version.
-- Every statement is IF NOT EXISTS, so a step that only adds tables re-applies this file:
--   1 -> 2  predictions
--   2 -> 3  label_imports, region_annotations, slide_labels (labels kept apart from patches), folds
--   3 -> 4  slides.kind (an ALTER TABLE step in db/db.c: existing tables are not re-created)

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT
);

CREATE TABLE IF NOT EXISTS slides (
    id          INTEGER PRIMARY KEY,
    path        TEXT NOT NULL UNIQUE,      -- as given on the command line, made absolute
    name        TEXT NOT NULL,             -- file name without directory and extension
    patient     TEXT,                      -- patient id (labels import); NULL until known
    fingerprint TEXT NOT NULL,             -- content hash of the slide file (xxh3 over size + sampled bytes)
    vendor      TEXT,                      -- openslide.vendor
    width       INTEGER,                   -- level-0 size
    height      INTEGER,
    level_count INTEGER,
    mpp_x       REAL,                      -- µm per level-0 pixel
    mpp_y       REAL,
    mpp_source  TEXT,                      -- openslide.mpp | aperio.MPP | tiff.XResolution | --mpp
    params      TEXT,                      -- tiling parameters as JSON
    params_hash TEXT,                      -- hash of params; a change means the slide is redone
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'tiling', 'done', 'failed')),
    error       TEXT,                      -- one-line reason when failed
    n_patches   INTEGER NOT NULL DEFAULT 0,
    n_bad_tiles INTEGER NOT NULL DEFAULT 0,
    label       TEXT,                      -- slide-level label (labels import), class name
    mask        BLOB,                      -- tissue mask as PNG (255 = tissue)
    mask_width  INTEGER,
    mask_height INTEGER,
    mask_downsample REAL,                  -- level-0 pixels per mask pixel
    kind        TEXT CHECK (kind IN ('brightfield', 'fluorescence')), -- from the mask's thumbnail (version 4); NULL until read
    started_at  TEXT,
    finished_at TEXT
);

CREATE TABLE IF NOT EXISTS patches (
    id         INTEGER PRIMARY KEY,
    slide_id   INTEGER NOT NULL REFERENCES slides(id) ON DELETE CASCADE,
    gx         INTEGER NOT NULL,           -- grid column and row
    gy         INTEGER NOT NULL,
    x0         INTEGER NOT NULL,           -- level-0 top-left
    y0         INTEGER NOT NULL,
    size0      REAL NOT NULL,              -- level-0 extent of the square (pixels)
    tissue     REAL NOT NULL,              -- tissue fraction from the mask, 0..1
    blur       REAL,                       -- variance of the Laplacian at the top magnification
    pen        REAL,                       -- pen-mark fraction, 0..1
    brightness REAL,                       -- mean luminance, 0..255
    UNIQUE (slide_id, gx, gy)
);
CREATE INDEX IF NOT EXISTS patches_slide ON patches(slide_id);

CREATE TABLE IF NOT EXISTS images (
    patch_id INTEGER NOT NULL REFERENCES patches(id) ON DELETE CASCADE,
    mag      REAL NOT NULL,                -- magnification (10 = 1.0 µm/px)
    width    INTEGER NOT NULL,
    height   INTEGER NOT NULL,
    level    INTEGER NOT NULL,             -- pyramid level read
    scale    REAL NOT NULL,                -- resampling factor applied after the read (<= 1)
    codec    TEXT NOT NULL CHECK (codec IN ('jpeg', 'png')),
    data     BLOB NOT NULL,
    PRIMARY KEY (patch_id, mag)
) WITHOUT ROWID;

-- Tiles that could not be read inside an otherwise good slide: recorded, skipped.
CREATE TABLE IF NOT EXISTS tile_errors (
    slide_id INTEGER NOT NULL REFERENCES slides(id) ON DELETE CASCADE,
    gx       INTEGER NOT NULL,
    gy       INTEGER NOT NULL,
    message  TEXT NOT NULL
);

-- Class names; labels refer to them by id.
CREATE TABLE IF NOT EXISTS classes (
    id   INTEGER PRIMARY KEY,              -- 0-based class index used by models
    name TEXT NOT NULL UNIQUE
);

-- Patch-level labels (from region annotations); a patch without one inherits its slide's label.
CREATE TABLE IF NOT EXISTS patch_labels (
    patch_id INTEGER PRIMARY KEY REFERENCES patches(id) ON DELETE CASCADE,
    class_id INTEGER NOT NULL REFERENCES classes(id),
    coverage REAL,                         -- fraction of the patch covered by that class
    source   TEXT
);

-- Splits are by slide (and so by patient): every patch of a slide is in the slide's split.
CREATE TABLE IF NOT EXISTS splits (
    slide_id INTEGER PRIMARY KEY REFERENCES slides(id) ON DELETE CASCADE,
    split    TEXT NOT NULL CHECK (split IN ('train', 'val', 'test', 'unlabeled'))
);

-- Patch predictions of `magpie infer --db` (version 2): one row per evaluated patch, per slide
-- and checkpoint; a rerun of the same pair replaces its rows. For curation, e.g. hard negatives:
--   SELECT slide_path, x0, y0, size0, json_extract(probs, '$[1]') AS p
--   FROM predictions WHERE class_name != 'Normal' ... ORDER BY confidence DESC
CREATE TABLE IF NOT EXISTS predictions (
    id                INTEGER PRIMARY KEY,
    slide_id          INTEGER REFERENCES slides(id) ON DELETE SET NULL, -- this dataset's slide with the same fingerprint
    slide_path        TEXT NOT NULL,          -- as given to infer
    slide_fingerprint TEXT NOT NULL,          -- as slides.fingerprint
    model_fingerprint TEXT NOT NULL,          -- content hash of the checkpoint file (prediction.json checkpoint_hash)
    model_path        TEXT,
    mag               REAL NOT NULL,          -- the model's magnification
    gx                INTEGER NOT NULL,       -- infer's grid cell (stride steps from the bounds origin)
    gy                INTEGER NOT NULL,
    x0                INTEGER NOT NULL,       -- level-0 top-left of the patch
    y0                INTEGER NOT NULL,
    size0             REAL NOT NULL,          -- level-0 extent of the patch
    class_id          INTEGER NOT NULL,       -- argmax class index of the model
    class_name        TEXT NOT NULL,
    confidence        REAL NOT NULL,          -- its probability
    probs             TEXT NOT NULL,          -- JSON array, one probability per model class in order
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    UNIQUE (slide_fingerprint, model_fingerprint, gx, gy)
);
CREATE INDEX IF NOT EXISTS predictions_slide ON predictions(slide_id);
CREATE INDEX IF NOT EXISTS predictions_class ON predictions(class_name, confidence);

-- Labels as imported (version 3), kept apart from the patches: re-tiling a slide deletes its
-- patches, and the slide's stored region annotations are then re-applied to the new ones (in
-- the transaction that marks the slide done), so no label is lost whatever --mags or grid.
-- patch_labels rows derived from them carry source 'import:ID'. Datasets labelled before
-- version 3 keep their 'geojson:FILE' patch labels until the slide is re-tiled.
CREATE TABLE IF NOT EXISTS label_imports (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('csv', 'geojson')),
    source       TEXT NOT NULL,             -- the file, made absolute
    slide_id     INTEGER REFERENCES slides(id) ON DELETE CASCADE, -- geojson: the slide annotated
    min_coverage REAL,                      -- geojson: share of a patch its class must cover
    rows         INTEGER NOT NULL DEFAULT 0, -- CSV rows or GeoJSON features read
    imported_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE INDEX IF NOT EXISTS label_imports_slide ON label_imports(slide_id);

-- One row per GeoJSON feature, geometry as imported (level-0 pixel coordinates).
CREATE TABLE IF NOT EXISTS region_annotations (
    id        INTEGER PRIMARY KEY,
    import_id INTEGER NOT NULL REFERENCES label_imports(id) ON DELETE CASCADE,
    slide_id  INTEGER NOT NULL REFERENCES slides(id) ON DELETE CASCADE,
    feature   INTEGER NOT NULL,             -- index in the file; earlier features win overlaps
    class_id  INTEGER NOT NULL REFERENCES classes(id),
    name      TEXT,                         -- properties.name or the feature id, if any
    geometry  TEXT NOT NULL                 -- the GeoJSON geometry object
);
CREATE INDEX IF NOT EXISTS region_annotations_slide ON region_annotations(slide_id);
CREATE INDEX IF NOT EXISTS region_annotations_import ON region_annotations(import_id);

-- Which CSV import set a slide's label and patient (slides.label/patient hold the values).
CREATE TABLE IF NOT EXISTS slide_labels (
    slide_id  INTEGER PRIMARY KEY REFERENCES slides(id) ON DELETE CASCADE,
    import_id INTEGER NOT NULL REFERENCES label_imports(id) ON DELETE CASCADE,
    label     TEXT,
    patient   TEXT
);
CREATE INDEX IF NOT EXISTS slide_labels_import ON slide_labels(import_id);

-- Patient-grouped, stratified k-fold assignment of `db split --folds K` (version 3): every
-- slide of a patient in one fold; the splits table holds the chosen fold as val.
CREATE TABLE IF NOT EXISTS folds (
    slide_id INTEGER PRIMARY KEY REFERENCES slides(id) ON DELETE CASCADE,
    fold     INTEGER NOT NULL,
    k        INTEGER NOT NULL
);
