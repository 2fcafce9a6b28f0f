"""Write the scikit-image sample photos the built-in model trains on, as PNGs in a folder.

Only pictures whose scikit-image docstring says public domain or CC0 are used:
astronaut, rocket, hubble_deep_field (public domain); chelsea, coffee, camera, brick, grass,
gravel (CC0). Usage: python scripts/skimage_photos.py OUT_FOLDER  (needs scikit-image).
"""

import sys
from pathlib import Path

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "camera", "brick", "grass", "gravel")


def main(out: str) -> None:
    import numpy as np
    import skimage.data
    from PIL import Image

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        img = np.asarray(getattr(skimage.data, name)())
        if img.dtype != np.uint8:
            img = (img * 255).round().astype(np.uint8) if img.max() <= 1 else img.astype(np.uint8)
        Image.fromarray(img).convert("RGB").save(folder / f"{name}.png")
    print(f"wrote {len(PHOTOS)} photos to {folder}")


if __name__ == "__main__":
    main(sys.argv[1])
