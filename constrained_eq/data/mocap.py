"""CMU Motion Capture: ASF/AMC forward kinematics, EGNO-style forecasting (subjects 9 and 35), synthetic walker.

Protocol (as far as it could be checked): the EGNO paper (Xu et al., ICML 2024) reuses the MoCap setup
of GMN (Huang et al., ICLR 2022). The public loader of that line of work reads pre-computed joint
positions per trial (31 joints), drops each trial's last frame, subtracts the trial's scalar mean
(``np.mean`` over all coordinates), uses velocities ``x[t+1] - x[t]``, predicts positions ``Δ = 30``
frames ahead, splits *by trial* with fixed trial indices, draws start frames with ``np.random.seed(100)``
among the first 300 (walk) / 70 (run) frames, 100 (walk) / 50 (run) per trial, and connects joints by
skeleton edges (``edge_attr = 1``) plus second-order "hinge" edges of the squared adjacency
(``edge_attr = 2``). That loader starts from a pickle of positions whose trial order and FK conventions
cannot be verified here, so the trial indices in :data:`EGNO_SPLITS` are applied to the *sorted* list
of trials passed in and the whole setup should be treated as a faithful re-implementation, not a
byte-identical reproduction.

Forward kinematics (Acclaim convention as used by common CMU parsers): for bone ``b`` with axis
rotation ``C_b`` (Euler angles of ``axis``, applied in its order, e.g. ``XYZ`` → ``Rz Ry Rx``) and
motion rotation ``M_b`` (the AMC DOF values, applied in ``dof`` order), the global rotation is
``R_b = R_parent C_b M_b C_b⁻¹`` and the joint at the end of ``b`` sits at
``p_b = p_parent + length_b R_b direction_b``. The root is translated by the AMC ``TX TY TZ`` and
rotated by ``C_root M_root C_root⁻¹`` (``orientation``/``axis`` of the ASF ``:root``). Lengths are kept
in ASF units (CMU files declare ``:units length 0.45``); pass ``length_scale`` to convert.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from constrained_eq.data._common import require_files

__all__ = ["Bone", "Skeleton", "parse_asf", "parse_amc", "forward_kinematics", "skeleton_graph",
           "egno_samples", "MocapEGNO", "EGNO_SPLITS", "synthetic_walker", "synthetic_mocap"]  # fmt: skip

# Trial indices (train, val, test) of the public GMN/EGNO loader; start-frame window; samples per trial.
EGNO_SPLITS: dict[str, tuple[list[int], list[int], list[int]]] = {
    "walk": ([20, 1, 17, 13, 14, 9, 4, 2, 7, 5, 16], [3, 8, 11, 12, 15, 18], [6, 19, 21, 0, 22, 10]),
    "run": ([1, 2, 5, 6, 10], [0, 4, 9, 8], [3, 7]),
}
_CASE = {9: ("run", 70, 50), 35: ("walk", 300, 100)}


@dataclass
class Bone:
    """One ASF bone: unit ``direction`` and ``length`` in the parent-free rest pose, ``axis`` angles."""

    name: str
    direction: np.ndarray
    length: float
    axis: np.ndarray = field(default_factory=lambda: np.zeros(3))
    axis_order: str = "XYZ"
    dof: tuple[str, ...] = ()


@dataclass
class Skeleton:
    """An ASF skeleton: root parameters, bones in file order and the parent of each bone."""

    bones: dict[str, Bone]
    parent: dict[str, str]
    root_order: tuple[str, ...] = ("TX", "TY", "TZ", "RX", "RY", "RZ")
    root_axis: str = "XYZ"
    root_position: np.ndarray = field(default_factory=lambda: np.zeros(3))
    root_orientation: np.ndarray = field(default_factory=lambda: np.zeros(3))

    @property
    def joint_names(self) -> list[str]:
        """``["root", *bones]``: joint ``k > 0`` is the end point of bone ``k``."""
        return ["root", *self.bones]

    def topological_bones(self) -> list[str]:
        """Bones ordered so that every parent precedes its children."""
        children: dict[str, list[str]] = {}
        for child, par in self.parent.items():
            children.setdefault(par, []).append(child)
        order, stack = [], list(reversed(children.get("root", [])))
        while stack:
            b = stack.pop()
            order.append(b)
            stack.extend(reversed(children.get(b, [])))
        missing = [b for b in self.bones if b not in order]
        if missing:
            raise ValueError(f"Expected 'hierarchy' to connect every bone to the root (got unattached {missing})")
        return order


def _rot(axis: str, ang: torch.Tensor) -> torch.Tensor:
    c, s, o, z = torch.cos(ang), torch.sin(ang), torch.ones_like(ang), torch.zeros_like(ang)
    rows = {"X": [[o, z, z], [z, c, -s], [z, s, c]], "Y": [[c, z, s], [z, o, z], [-s, z, c]],
            "Z": [[c, -s, z], [s, c, z], [z, z, o]]}[axis.upper()]  # fmt: skip
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def _euler(angles_deg: torch.Tensor, axes: str) -> torch.Tensor:
    """Rotation applying ``angles_deg[..., k]`` about ``axes[k]`` in order (first axis acts first)."""
    out = torch.eye(3, dtype=torch.float64).expand(*angles_deg.shape[:-1], 3, 3)
    for k, a in enumerate(axes):
        out = _rot(a, torch.deg2rad(angles_deg[..., k])) @ out
    return out


def _axis_matrix(angles_xyz: np.ndarray, order: str) -> torch.Tensor:
    vals = {"X": angles_xyz[0], "Y": angles_xyz[1], "Z": angles_xyz[2]}
    return _euler(torch.tensor([vals[a] for a in order.upper()], dtype=torch.float64), order.upper())


def parse_asf(path: str | os.PathLike[str]) -> Skeleton:
    """Parse an Acclaim skeleton (``.asf``) file (``:root``, ``:bonedata``, ``:hierarchy``)."""
    section, bones, parent, cur = "", {}, {}, None
    root: dict[str, list[str]] = {}
    for raw in Path(path).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(":"):
            section = line.split()[0][1:].lower()
            continue
        tok = line.split()
        if section == "root":
            root[tok[0].lower()] = tok[1:]
        elif section == "bonedata":
            if tok[0] == "begin":
                cur = {}
            elif tok[0] == "end" and cur is not None:
                name = cur["name"][0]
                axis = cur.get("axis", ["0", "0", "0", "XYZ"])
                bones[name] = Bone(
                    name=name,
                    direction=np.array([float(v) for v in cur["direction"]]),
                    length=float(cur["length"][0]),
                    axis=np.array([float(v) for v in axis[:3]]),
                    axis_order=axis[3] if len(axis) > 3 else "XYZ",
                    dof=tuple(d.lower() for d in cur.get("dof", [])),
                )
                cur = None
            elif cur is not None and tok[0] != "limits" and not tok[0].startswith("("):
                cur[tok[0].lower()] = tok[1:]
        elif section == "hierarchy" and tok[0] not in ("begin", "end"):
            for child in tok[1:]:
                parent[child] = tok[0]
    unknown = [c for c in parent if c not in bones]
    if unknown:
        raise ValueError(f"Expected 'hierarchy' entries to be bones of {path} (got {unknown})")
    return Skeleton(
        bones=bones,
        parent=parent,
        root_order=tuple(t.upper() for t in root.get("order", ["TX", "TY", "TZ", "RX", "RY", "RZ"])),
        root_axis=root.get("axis", ["XYZ"])[0].upper(),
        root_position=np.array([float(v) for v in root.get("position", ["0", "0", "0"])]),
        root_orientation=np.array([float(v) for v in root.get("orientation", ["0", "0", "0"])]),
    )


def parse_amc(path: str | os.PathLike[str]) -> list[dict[str, list[float]]]:
    """Parse an Acclaim motion (``.amc``) file into one ``{bone: DOF values}`` dict per frame."""
    frames: list[dict[str, list[float]]] = []
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith(":"):
            continue
        tok = line.split()
        if len(tok) == 1 and tok[0].isdigit():
            frames.append({})
        elif not frames:
            raise ValueError(f"Expected 'frame number' before bone data in {path} (got {line!r})")
        else:
            frames[-1][tok[0]] = [float(v) for v in tok[1:]]
    return frames


def forward_kinematics(skel: Skeleton, frames: list[dict[str, list[float]]], length_scale: float = 1.0) -> torch.Tensor:
    """Joint positions ``(T, 1 + n_bones, 3)`` (float64) in :attr:`Skeleton.joint_names` order."""
    t = len(frames)
    names = skel.joint_names
    index = {n: k for k, n in enumerate(names)}
    pos = torch.zeros(t, len(names), 3, dtype=torch.float64)
    rot: dict[str, torch.Tensor] = {}
    root_vals = torch.tensor(
        [[f.get("root", [0.0] * len(skel.root_order))[k] if "root" in f else 0.0 for k in range(len(skel.root_order))]
         for f in frames], dtype=torch.float64,
    ).reshape(t, len(skel.root_order))  # fmt: skip
    trans = torch.zeros(t, 3, dtype=torch.float64) + torch.tensor(skel.root_position)
    rdofs = [(k, ch[1]) for k, ch in enumerate(skel.root_order) if ch.startswith("R")]
    for k, ch in enumerate(skel.root_order):
        if ch.startswith("T"):
            trans[:, "XYZ".index(ch[1])] = root_vals[:, k]
    c_root = _axis_matrix(skel.root_orientation, skel.root_axis)
    m_root = _euler(root_vals[:, [k for k, _ in rdofs]], "".join(a for _, a in rdofs))
    rot["root"] = c_root @ m_root @ c_root.T
    pos[:, 0] = trans * length_scale
    for b in skel.topological_bones():
        bone = skel.bones[b]
        vals = torch.tensor([f.get(b, [0.0] * len(bone.dof)) for f in frames], dtype=torch.float64)
        vals = vals.reshape(t, len(bone.dof))
        c = _axis_matrix(bone.axis, bone.axis_order)
        m = _euler(vals, "".join(d[1] for d in bone.dof if d.startswith("r")))
        rot[b] = rot[skel.parent[b]] @ c @ m @ c.T
        d = torch.tensor(bone.direction * bone.length * length_scale, dtype=torch.float64)
        pos[:, index[b]] = pos[:, index[skel.parent[b]]] + rot[b] @ d
    return pos


def skeleton_graph(num_joints: int, bones: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Directed edges: skeleton edges (attr 1) plus second-order "hinge" edges ``A²`` (attr 2).

    Returns:
        ``(edge_index (2, E), edge_attr (E, 1))``; both directions are present, no self loops.
    """
    a = torch.zeros(num_joints, num_joints, dtype=torch.long)
    for i, j in bones:
        a[i, j] = a[j, i] = 1
    a2 = (a @ a > 0).long()
    a2.fill_diagonal_(0)
    a2 = a2 * (1 - a)
    rows, cols, attr = [], [], []
    for i in range(num_joints):
        for j in range(num_joints):
            if a[i, j] or a2[i, j]:
                rows.append(i)
                cols.append(j)
                attr.append([1.0 if a[i, j] else 2.0])
    return torch.tensor([rows, cols], dtype=torch.long), torch.tensor(attr).reshape(-1, 1)


def egno_samples(
    trajectories: list[torch.Tensor], graph: tuple[torch.Tensor, torch.Tensor], starts: list[np.ndarray],
    delta_frame: int = 30,
) -> list[Data]:  # fmt: skip
    """Build ``Data(pos=x_t, vel=x_{t+1}-x_t, y=x_{t+Δ})`` samples from ``(T, J, 3)`` trajectories.

    Each trajectory loses its last frame (so every kept frame has a forward velocity) and is shifted by
    its scalar mean, as in the reference loader.
    """
    out = []
    for k, (traj, st) in enumerate(zip(trajectories, starts, strict=True)):
        vel = traj[1:] - traj[:-1]
        x = traj[:-1] - traj[:-1].mean()
        for t in st.tolist():
            if t + delta_frame >= x.shape[0]:
                raise ValueError(f"Expected 'start frame' + {delta_frame} < {x.shape[0]} (got {t})")
            out.append(Data(pos=x[t].float(), vel=vel[t].float(), y=x[t + delta_frame].float(),
                            edge_index=graph[0], edge_attr=graph[1], trial=k, frame=t))  # fmt: skip
    return out


class MocapEGNO(torch.utils.data.Dataset):
    """EGNO-style CMU MoCap forecasting for subject 9 (Run) or 35 (Walk) from ASF/AMC files.

    Files: ``root/<NN>/<NN>.asf`` and ``root/<NN>/<NN>_<TT>.amc`` (CMU ``all_asfamc/subjects`` layout,
    ``NN`` = ``09`` or ``35``).

    Args:
        root: Folder holding the subject folders.
        subject: 9 or 35.
        split: ``"train"``, ``"val"`` or ``"test"``.
        delta_frame: Forecast horizon Δ in frames.
        trials: Trial numbers to use (sorted); default: every AMC file of the subject.
        seed: Seed of the start-frame draw (reference: 100).
        length_scale: Multiplies ASF lengths and root translations.
    """

    def __init__(
        self, root: str | os.PathLike[str], subject: int = 35, split: str = "train", delta_frame: int = 30,
        trials: list[int] | None = None, seed: int = 100, length_scale: float = 1.0,
    ) -> None:  # fmt: skip
        if subject not in _CASE:
            raise ValueError(f"Expected 'subject' to be one of {sorted(_CASE)} (got {subject!r})")
        if split not in ("train", "val", "test"):
            raise ValueError(f"Expected 'split' to be one of ('train', 'val', 'test') (got {split!r})")
        case, window, per_trial = _CASE[subject]
        folder = Path(root) / f"{subject:02d}"
        if trials is None:
            trials = sorted(int(p.stem.split("_")[1]) for p in folder.glob(f"{subject:02d}_*.amc"))
        amcs = [f"{subject:02d}_{t:02d}.amc" for t in sorted(trials)] or [f"{subject:02d}_<TT>.amc"]
        require_files(folder, [f"{subject:02d}.asf", *amcs], f"CMU MoCap subject {subject}",
                      "Copy them from the CMU 'all_asfamc/subjects' release.")  # fmt: skip
        skel = parse_asf(folder / f"{subject:02d}.asf")
        trajs = [forward_kinematics(skel, parse_amc(folder / f), length_scale) for f in amcs]
        ref = EGNO_SPLITS[case]
        if len(trajs) == sum(len(s) for s in ref):
            parts = ref
        else:  # seeded trial-level split with roughly the reference proportions
            perm = np.random.RandomState(seed).permutation(len(trajs)).tolist()
            n_tr = max(1, len(trajs) // 2)
            n_va = max(0, (len(trajs) - n_tr) // 2)
            parts = (perm[:n_tr], perm[n_tr : n_tr + n_va], perm[n_tr + n_va :])
        rng = np.random.RandomState(seed)
        starts = []
        for ids in parts:  # drawn for train, val, test in this order, as in the reference
            starts.append([rng.choice(min(window, len(trajs[i]) - 1 - delta_frame),
                                      size=min(per_trial, max(0, len(trajs[i]) - 1 - delta_frame)),
                                      replace=False) for i in ids])  # fmt: skip
        which = ("train", "val", "test").index(split)
        names = skel.joint_names
        bones = [(names.index(p), names.index(c)) for c, p in skel.parent.items()]
        self.graph = skeleton_graph(len(names), bones)
        self.trials = [sorted(trials)[i] for i in parts[which]]
        self.samples = egno_samples([trajs[i] for i in parts[which]], self.graph, starts[which], delta_frame)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Data:
        return self.samples[i]


def synthetic_walker(num_frames: int = 120, seed: int = 0) -> tuple[Skeleton, torch.Tensor]:
    """SYNTHETIC articulated walker (9 joints: spine, head, two 2-bone legs, two arms).

    Driven by sinusoidal joint angles with random phase/amplitude and a forward-drifting, yawing root.

    Returns:
        ``(skeleton, positions (num_frames, 9, 3) float64)``.
    """
    rng = np.random.RandomState(seed)
    spec = [
        ("spine", (0, 1, 0), 3.0, "root"),
        ("lfemur", (0, -1, 0), 4.0, "root"),
        ("ltibia", (0, -1, 0), 4.0, "lfemur"),
        ("rfemur", (0, -1, 0), 4.0, "root"),
        ("rtibia", (0, -1, 0), 4.0, "rfemur"),
        ("lhumerus", (1, 0, 0), 3.0, "spine"),
        ("rhumerus", (-1, 0, 0), 3.0, "spine"),
        ("head", (0, 1, 0), 1.0, "spine"),
    ]
    bones = {n: Bone(n, np.array(d, float), ln, dof=("rx", "ry", "rz")) for n, d, ln, _ in spec}
    skel = Skeleton(bones=bones, parent={n: p for n, _, _, p in spec})
    t = np.arange(num_frames) / 30.0
    freq, phase = 1.0 + 0.2 * rng.rand(), rng.rand() * 2 * np.pi
    frames = []
    for k in range(num_frames):
        s = np.sin(2 * np.pi * freq * t[k] + phase)
        f = {"root": [0.0, 0.0, 5.0 * t[k], 0.0, 10.0 * np.sin(0.5 * t[k]), 0.0]}
        for n in bones:
            amp = 30.0 if n.endswith("femur") or n.endswith("humerus") else 15.0
            sign = -1.0 if n.startswith("r") else 1.0
            f[n] = [sign * amp * s + rng.randn() * 0.5, 0.0, 5.0 * rng.randn() * 0.1]
        frames.append(f)
    return skel, forward_kinematics(skel, frames)


def synthetic_mocap(num_trials: int = 3, num_frames: int = 90, delta_frame: int = 30, seed: int = 0) -> list[Data]:
    """SYNTHETIC EGNO-style samples from :func:`synthetic_walker` trajectories (every frame a sample)."""
    trajs, skel = [], None
    for k in range(num_trials):
        skel, traj = synthetic_walker(num_frames, seed + k)
        trajs.append(traj)
    names = skel.joint_names
    graph = skeleton_graph(len(names), [(names.index(p), names.index(c)) for c, p in skel.parent.items()])
    starts = [np.arange(num_frames - 1 - delta_frame) for _ in trajs]
    return egno_samples(trajs, graph, starts, delta_frame)
