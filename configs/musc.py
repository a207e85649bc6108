"""adapt run configs/musc.py:defects,Trouser --workdir runs/musc_trouser

MuSc zero-shot anomaly scoring of one pool (one product category). The argument after ':' is a pool
preset of configs/common.py (textile, ...), or `defects,CLASS[,RATIO]` for the seeded CutPaste pool of
one Fashion-MNIST class (adapt/data/defects.py: 270 normal + 15 defect images, dark on white, 224 px;
RATIO, e.g. 0.35, sets the defective share of the 285 instead);
without one, give a folder with `--set pool.path=DIR`: a class folder named good / normal / nominal
is the normal class (labels are for evaluation only).

Hyperparameters: the spec's defaults (musc.md) for ViTs: MSM rank window [0, 0.3), RsCIN windows
[1, 2, 3], layers d/4, d/2, 3d/4, d with LNAMD r in {1, 3, 5}. `layers`, `degrees`, `frac` = 0 and
`rscin` = auto mean the model's defaults (adapt/anomaly/patches.py). On the offline CNN those are: the
stride-16 stage map with r = 3 (the issue-10 calibration setting), the rank window [0, 0.1) and
RsCIN off. The window and RsCIN were chosen (issue 21) on 12 held-out CutPaste pools (train split;
Pullover, Coat, Sandal; anomaly ratios 5%, 20%, 35%, 50%) by a rule written down first: the largest
worst-ratio margin over the image-kNN baseline (experiments/musc/README.md, Results 5). RsCIN
averages an image's score with its nearest pool neighbours', which dilutes a local defect; the
narrower window scores a patch against the images that resemble its own more closely.

There is ONE setting for every pool kind: a folder (`--set pool.path=DIR`, anomaly ratio unknown),
the `defects` preset and the other presets get the same defaults (before issue 21 the folder
default kept RsCIN and only the `defects` preset switched it off). `rscin` = on | off and `frac`
> 0 override them.
"""
from configs.common import base_config

DEFECT_CLASSES = ("Trouser", "Bag", "Sneaker")


def get_config(arg: str = ""):
    preset, _, rest = (arg or "").partition(",")
    config = base_config("musc", "" if preset == "defects" else arg)
    if preset == "defects":
        name, _, ratio = rest.partition(",")
        config.pool.kind = "defects"
        config.pool.name = name or DEFECT_CLASSES[0]
        config.pool.invert = True
        config.pool.defect_ratio = float(ratio or 0.0)  # 0 = the standard 15 of 285
    config.embed.batch_size = 32
    a = config.method_args
    a.layers = []  # model layer ids; [] = model default (see adapt.anomaly.patches.default_layers)
    a.degrees = []  # LNAMD r (odd); [] = model default ((1, 3, 5) ViT, (3,) offline CNN)
    a.frac = 0.0  # MSM: mean of the ranks [frac_min, frac) * (N - 1); 0 = model default (see above)
    a.frac_min = 0.0
    a.rounding = "floor_min1"  # floor (official; K = 0 is an error) | floor_min1 | ceil
    a.k_list = [1, 2, 3]  # RsCIN windows (used when RsCIN is on); [] switches RsCIN off
    a.rscin = "auto"  # auto = model default (see above) | on | off
    a.schedule = "auto"  # auto | symmetric | stream | same_position
    a.precision = "float32"  # float32 (reference) | bfloat16
    a.block = 0  # images per MSM block; 0 = from tile_mb
    a.tile_mb = 0.0  # MSM tile budget; 0 = 8 MB on CPU, 256 MB on accelerators
    a.table_mb = 1024.0  # auto: symmetric while its (N/D, N, P) table fits, else stream
    a.image_size = 0  # input and pixel-map size; 0 = the model's
    a.normal_class = ""  # evaluation only; "" = a class named good / normal / nominal / ok
    a.plot_images = 8
    a.save_maps = False
    return config
