"""Face contours from FaceMesh: the crop it is fed, the face-oval polygon, and its masks.

The one Python reference for this geometry: the two-model Python path, the nvinfer emulation and the
compiled DeepStream components (plugins/contour/) are all compared against it.

Crop (MediaPipe's face_detection_front_detection_to_roi graph: DetectionsToRectsCalculator with the
eye keypoints and target angle 0, then RectTransformationCalculator with scale 1.5 and square_long):
a square of side 1.5 x max(box w, box h) centred on the box centre, optionally turned by the eye
line's angle so the eyes come out level. FaceMesh sees that square resized to 192 x 192.

Crop pixel coordinates are continuous: u in [0, side] spans the crop's width from its left edge,
so a frame point is  centre + R(angle) @ ((u - side/2) * width/side, (v - side/2) * height/side).
nvinfer's crop (axis-aligned, even-rounded, not always square) is the same map with angle 0:
`Crop.from_rect`.

Masks are binary and sample pixel centres with the crossing-number (even-odd) rule, evaluated as
    inside ^= ((yi > py) != (yj > py)) and px < (xj - xi) * (py - yi) / (yj - yi) + xi
in double precision, edge by edge in polygon order; the C++ component evaluates the same expression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CROP_SIDE = 192  # FaceMesh's input: 192 x 192 RGB

# MediaPipe's FACEMESH_FACE_OVAL (mediapipe/python/solutions/face_mesh_connections.py) is a set of 36
# edges (10, 338), (338, 297), ..., (109, 10); walked from landmark 10 (forehead top) it is this
# closed polygon: down the image's left side to the chin (152) and back up the other side.
FACE_OVAL: tuple[int, ...] = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)


@dataclass(frozen=True)
class Crop:
    """A (possibly rotated) rectangle of the frame that is resized to side x side for FaceMesh."""
    cx: float
    cy: float
    width: float
    height: float
    angle: float = 0.0  # radians; the crop's x axis is (cos, sin) in frame pixels (y down)
    side: int = CROP_SIDE

    @classmethod
    def from_rect(cls, left: float, top: float, width: float, height: float, side: int = CROP_SIDE) -> "Crop":
        """An axis-aligned crop, as nvinfer cuts an object box (see nvinfer/emulation/secondary.py)."""
        return cls(left + width / 2.0, top + height / 2.0, float(width), float(height), 0.0, side)

    def to_frame(self) -> np.ndarray:
        """2 x 3 affine: crop pixel (u, v, 1) -> frame pixel (x, y)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        sx, sy = self.width / self.side, self.height / self.side
        a = np.array([[c * sx, -s * sy], [s * sx, c * sy]])
        t = np.array([self.cx, self.cy]) - a @ np.array([self.side / 2.0, self.side / 2.0])
        return np.concatenate([a, t[:, None]], axis=1)

    def to_crop(self) -> np.ndarray:
        """2 x 3 affine: frame pixel (x, y, 1) -> crop pixel (u, v) (what cv2.warpAffine takes)."""
        m = self.to_frame()
        inv = np.linalg.inv(m[:, :2])
        return np.concatenate([inv, (-inv @ m[:, 2])[:, None]], axis=1)

    def corners(self) -> np.ndarray:
        """[4, 2] frame corners: top-left, top-right, bottom-right, bottom-left of the crop."""
        uv = np.array([[0, 0], [self.side, 0], [self.side, self.side], [0, self.side]], np.float64)
        return apply_affine(self.to_frame(), uv)


def apply_affine(m: np.ndarray, pts) -> np.ndarray:
    """[N, 2] points through a 2 x 3 affine."""
    p = np.asarray(pts, np.float64)[:, :2]
    return p @ m[:, :2].T + m[:, 2]


def eye_angle(left_eye, right_eye) -> float:
    """The eye line's angle in radians, folded into (-pi/2, pi/2] (a profile detector may report the
    eyes right-to-left; the line matters, not its direction). 0 when the eyes coincide."""
    dx = float(right_eye[0]) - float(left_eye[0])
    dy = float(right_eye[1]) - float(left_eye[1])
    if dx < 0:
        dx, dy = -dx, -dy
    if dx == 0.0 and dy == 0.0:
        return 0.0
    return math.atan2(dy, dx)


def facemesh_crop_box(box, left_eye=None, right_eye=None, scale: float = 1.5, rotate: bool = False,
                      side: int = CROP_SIDE) -> Crop:
    """MediaPipe's FaceMesh crop for a face box (x1, y1, x2, y2): square, `scale` x the box's long side,
    centred on the box, turned to level the eyes when `rotate` (eyes as the frame shows them, image-left
    first, e.g. the detector's landmarks 0 and 1)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    size = scale * max(x2 - x1, y2 - y1)
    angle = eye_angle(left_eye, right_eye) if rotate and left_eye is not None and right_eye is not None else 0.0
    return Crop((x1 + x2) / 2.0, (y1 + y2) / 2.0, size, size, angle, side)


def oval_polygon(landmarks_crop, crop: Crop) -> np.ndarray:
    """[36, 2] frame-coordinate face-oval polygon from FaceMesh's landmarks ([468, 2 or 3], crop pixels)."""
    lm = np.asarray(landmarks_crop, np.float64)
    return apply_affine(crop.to_frame(), lm[list(FACE_OVAL), :2])


def polygon_bounds(polygon) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) of a polygon: the box the contour component gives the object."""
    p = np.asarray(polygon, np.float64)
    return float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())


def points_in_polygon(polygon, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Even-odd rule at points (px, py) (broadcast together), the expression in the module docstring."""
    p = np.asarray(polygon, np.float64)
    px, py = np.broadcast_arrays(np.asarray(px, np.float64), np.asarray(py, np.float64))
    inside = np.zeros(px.shape, bool)
    n = len(p)
    for i in range(n):
        xi, yi = p[i]
        xj, yj = p[i - 1]  # the closing edge first, as the C++ loop (j = n - 1, i = 0) does
        if yi == yj:
            continue  # horizontal edge: (yi > py) == (yj > py) everywhere, and no division by zero
        crosses = (yi > py) != (yj > py)
        with np.errstate(invalid="ignore", divide="ignore"):
            xint = (xj - xi) * (py - yi) / (yj - yi) + xi
        inside ^= crosses & (px < xint)
    return inside


def polygon_frame_mask(polygon, h: int, w: int) -> np.ndarray:
    """[h, w] bool: frame pixels whose centre lies inside the polygon."""
    out = np.zeros((h, w), bool)
    x1, y1, x2, y2 = polygon_bounds(polygon)
    xa, xb = max(int(math.floor(x1)), 0), min(int(math.ceil(x2)) + 1, w)
    ya, yb = max(int(math.floor(y1)), 0), min(int(math.ceil(y2)) + 1, h)
    if xa < xb and ya < yb:
        xs = np.arange(xa, xb, dtype=np.float64) + 0.5
        ys = np.arange(ya, yb, dtype=np.float64) + 0.5
        out[ya:yb, xa:xb] = points_in_polygon(polygon, xs[None, :], ys[:, None])
    return out


def polygon_box_grid(polygon, box, grid: int = 32) -> np.ndarray:
    """[grid, grid] float32 0/1 mask over the box (x1, y1, x2, y2): cell (r, c) is 1 when the centre of
    cell c, r (x1 + (c + 0.5) (x2 - x1) / grid, ...) lies inside the polygon. nvdsosd samples an object's
    mask on a 32 x 32 grid over its box (cuosd_kernel.cu, render_blur_kernel), so a 32 x 32 mask is
    read cell for cell; 0 where a cell is not blurred, 1 where it is."""
    x1, y1, x2, y2 = (float(v) for v in box)
    xs = x1 + (np.arange(grid, dtype=np.float64) + 0.5) * (x2 - x1) / grid
    ys = y1 + (np.arange(grid, dtype=np.float64) + 0.5) * (y2 - y1) / grid
    return points_in_polygon(polygon, xs[None, :], ys[:, None]).astype(np.float32)


# ------------------------------------------------------------- the DeepStream components' rules
# plugins/contour/ implements these two functions in C++ (tests/test_contour_component.py compares).

def square_rect(left: float, top: float, width: float, height: float, frame_w: int, frame_h: int,
                scale: float = 1.5) -> tuple[int, int, int, int]:
    """The box-squaring component before the FaceMesh SGIE: MediaPipe's square crop of an object box
    (left, top, width, height), snapped so that nvinfer crops exactly it, kept inside the frame.

    side s = scale * max(w, h), floored to even (at least 2, at most the frame's even-floored short
    side); left = 2 floor((cx - s/2) / 2 + 1/2) (the nearest even integer), clamped to
    [0, even(frame_w) - s]; top likewise. nvinfer's crop (gstnvinfer.cpp, get_converted_buffer) rounds
    left/top up to even and width/height down to even and crops outside the frame into a failed
    transform, so an even, in-frame square is cropped as it is. A square that would leave the frame is
    shifted back in (not cut): it stays square and keeps its scale, the face sits off-centre."""
    fw, fh = int(frame_w) & ~1, int(frame_h) & ~1
    s = 2 * int(math.floor(scale * max(float(width), float(height)) / 2.0))
    s = min(max(s, 2), min(fw, fh))
    cx = float(left) + float(width) / 2.0
    cy = float(top) + float(height) / 2.0
    x = 2 * int(math.floor((cx - s / 2.0) / 2.0 + 0.5))
    y = 2 * int(math.floor((cy - s / 2.0) / 2.0 + 0.5))
    return min(max(x, 0), fw - s), min(max(y, 0), fh - s), s, s


def contour_object(polygon, presence: float, threshold: float, frame_w: int, frame_h: int, grid: int = 32):
    """The contour component after the FaceMesh SGIE, for one face: (box, mask) or None.

    With presence >= threshold: the box is the oval's bounds cut at the frame, (x1, y1, x2, y2), and
    the mask its grid x grid cells inside the oval (polygon_box_grid). None (the caller restores the
    detector's box and keeps the detector's mask) when FaceMesh reports no face, or the oval has no
    area inside the frame."""
    if not presence >= threshold:  # also NaN
        return None
    x1, y1, x2, y2 = polygon_bounds(polygon)
    box = (max(x1, 0.0), max(y1, 0.0), min(x2, float(frame_w)), min(y2, float(frame_h)))
    if not (box[2] > box[0] and box[3] > box[1]):
        return None
    return box, polygon_box_grid(polygon, box, grid)
