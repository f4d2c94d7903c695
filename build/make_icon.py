"""Draw the radview icon with code and write ``build/radview.png`` and ``build/radview.ico``.

Run once after changing the drawing (``.venv/bin/python build/make_icon.py``); both outputs are
committed, so a build needs neither this script nor Pillow at packaging time. The picture: a dark
rounded tile holding a stylised chest film (two lung fields, a spine and ribs) with a cyan focus
ring, drawn at 4x and downsampled so the small sizes stay smooth.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
SIZES = [16, 24, 32, 48, 64, 128, 256]


def draw(size: int = 256, scale: int = 4) -> Image.Image:
    """The icon as an RGBA image of ``size`` pixels square."""
    s = size * scale
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)

    def box(x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        return (int(x0 * s), int(y0 * s), int(x1 * s), int(y1 * s))

    d.rounded_rectangle(box(0.03, 0.03, 0.97, 0.97), radius=int(0.18 * s), fill=(18, 28, 44, 255))
    # Film: the lung fields are dark (air) on a light body, as on a MONOCHROME2 chest radiograph.
    d.rounded_rectangle(box(0.14, 0.12, 0.86, 0.90), radius=int(0.08 * s), fill=(196, 204, 214, 255))
    d.ellipse(box(0.20, 0.20, 0.47, 0.80), fill=(40, 48, 60, 255))
    d.ellipse(box(0.53, 0.20, 0.80, 0.80), fill=(40, 48, 60, 255))
    d.rectangle(box(0.475, 0.14, 0.525, 0.88), fill=(232, 236, 240, 255))
    for i in range(5):  # ribs: light arcs across each lung field
        y = 0.28 + i * 0.10
        d.arc(box(0.18, y - 0.06, 0.50, y + 0.10), 200, 340, fill=(170, 178, 190, 255), width=int(0.018 * s))
        d.arc(box(0.50, y - 0.06, 0.82, y + 0.10), 200, 340, fill=(170, 178, 190, 255), width=int(0.018 * s))
    # The AI "focus": a heat spot and a ring over the right lung field.
    glow = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    ImageDraw.Draw(glow).ellipse(box(0.56, 0.42, 0.78, 0.66), fill=(255, 140, 0, 170))
    img = Image.alpha_composite(img, glow.filter(ImageFilter.GaussianBlur(0.03 * s)))
    d = ImageDraw.Draw(img)
    d.ellipse(box(0.52, 0.38, 0.82, 0.70), outline=(0, 220, 255, 255), width=int(0.03 * s))
    return img.resize((size, size), Image.LANCZOS)


def main() -> None:
    big = draw(256)
    big.save(HERE / "radview.png")
    big.save(HERE / "radview.ico", sizes=[(n, n) for n in SIZES])
    print(f"wrote {HERE / 'radview.png'} and {HERE / 'radview.ico'} ({len(SIZES)} sizes)")


if __name__ == "__main__":
    main()
