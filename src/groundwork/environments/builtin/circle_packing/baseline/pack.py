"""Circle packing: place N circles without overlap inside a container so that the sum of
their radii is as large as possible.

Run as `python pack.py`. The task comes from the harness: GROUNDWORK_CIRCLES circles in
GROUNDWORK_CONTAINER, either "square" (the unit square) or "rect-perimeter-4" (a rectangle
whose width and height add up to 2; this program chooses its width). The packing goes to
GROUNDWORK_OUT_DIR/packing.json as {"centers": [[x, y], ...], "radii": [...], "width": W,
"height": H}, with the container's lower-left corner at (0, 0). The locked evaluation
checks it strictly and scores the sum of the radii.
"""

import json
import math
import os

import numpy as np

SEED = 0
RECT_WIDTH = 1.0  # rect-perimeter-4 only: the rectangle's width (its height is 2 - RECT_WIDTH)
SAFETY = 1e-12  # radii are shrunk by this much so rounding never makes circles touch the limit


def initial_centers(n, width, height):
    """Square grid: the smallest k x k grid holding n cells, filled row by row, one circle
    centred in each cell."""
    k = math.ceil(math.sqrt(n))
    cells = [((i % k + 0.5) / k, (i // k + 0.5) / k) for i in range(n)]
    return np.array(cells) * np.array([width, height])


def assign_radii(centers, width, height):
    """Equal radii: the largest radius every circle can have at once."""
    n = len(centers)
    walls = np.minimum.reduce([centers[:, 0], width - centers[:, 0], centers[:, 1], height - centers[:, 1]])
    r = walls.min()
    if n > 1:
        d = np.linalg.norm(centers[:, None, :] - centers[None, :, :], axis=-1)
        r = min(r, d[np.triu_indices(n, 1)].min() / 2)
    return np.full(n, r)


def refine(centers, radii, width, height):
    """No refinement."""
    return centers, radii


def make_feasible(centers, radii, width, height):
    """Shrink radii until every circle lies inside the container and no two overlap."""
    radii = np.minimum.reduce(
        [radii, centers[:, 0], width - centers[:, 0], centers[:, 1], height - centers[:, 1]]
    ) * (1 - SAFETY)
    radii = np.maximum(radii, 0.0)
    n = len(radii)
    for _ in range(100):
        d = np.linalg.norm(centers[:, None, :] - centers[None, :, :], axis=-1) + np.eye(n) * 1e9
        excess = radii[:, None] + radii[None, :] - d
        if excess.max() <= 0:
            break
        i, j = np.unravel_index(np.argmax(excess), excess.shape)
        scale = d[i, j] / (radii[i] + radii[j]) * (1 - SAFETY)
        radii[i] *= scale
        radii[j] *= scale
    return radii


def construct_packing(n, width, height):
    centers = initial_centers(n, width, height)
    radii = assign_radii(centers, width, height)
    centers, radii = refine(centers, radii, width, height)
    return centers, make_feasible(centers, radii, width, height)


def main():
    n = int(os.environ.get("GROUNDWORK_CIRCLES", "26"))
    container = os.environ.get("GROUNDWORK_CONTAINER", "square")
    width, height = (1.0, 1.0) if container == "square" else (RECT_WIDTH, 2.0 - RECT_WIDTH)
    np.random.seed(SEED)
    centers, radii = construct_packing(n, width, height)
    out = os.environ.get("GROUNDWORK_OUT_DIR", "out")
    os.makedirs(out, exist_ok=True)
    packing = {"centers": centers.tolist(), "radii": radii.tolist(), "width": width, "height": height}
    with open(os.path.join(out, "packing.json"), "w") as f:
        json.dump(packing, f)
    print(f"{n} circles, sum of radii {float(np.sum(radii)):.6f}")


if __name__ == "__main__":
    main()
