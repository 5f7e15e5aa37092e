import math

import numpy as np
import pytest
import torch

from constrained_eq.data.modelnet import (
    Compose,
    ModelNet40H5,
    ModelNetOFF,
    NormalizeUnitSphere,
    RandomPointDrop,
    RandomRotation,
    SubsamplePoints,
    SyntheticShapes,
    random_point_drop,
    read_off,
    sample_surface,
)
from constrained_eq.symmetry import random_rotation


def _h5py():
    """h5py, or a skip of the calling test: only the two HDF5 tests need the optional dependency."""
    return pytest.importorskip("h5py", reason="optional dependency h5py (ModelNet40 HDF5) is not installed")


def write_h5_release(root, n_train=(3, 2), n_test=(2,), n_points=2048):
    h5py = _h5py()
    root.mkdir(parents=True, exist_ok=True)
    (root / "shape_names.txt").write_text("\n".join(["airplane", "bathtub", "bed"]) + "\n")
    rng = np.random.default_rng(0)
    truth = {}
    for split, sizes in (("train", n_train), ("test", n_test)):
        listed = []
        for k, n in enumerate(sizes):
            name = f"ply_data_{split}{k}.h5"
            data = rng.standard_normal((n, n_points, 3)).astype(np.float32)
            label = rng.integers(0, 3, size=(n, 1)).astype(np.uint8)
            with h5py.File(root / name, "w") as fh:
                fh.create_dataset("data", data=data)
                fh.create_dataset("label", data=label)
            truth.setdefault(split, []).append((data, label))
            listed.append(f"data/modelnet40_ply_hdf5_2048/{name}")
        (root / f"{split}_files.txt").write_text("\n".join(listed) + "\n")
    return truth


def test_h5_loader_reads_the_release_layout(tmp_path):
    truth = write_h5_release(tmp_path / "h5")
    ds = ModelNet40H5(tmp_path / "h5", "train")
    assert len(ds) == 5 and ds.classes == ["airplane", "bathtub", "bed"]
    pts, label = ds[3]
    assert pts.shape == (2048, 3) and pts.dtype == torch.float32
    assert torch.equal(pts, torch.from_numpy(truth["train"][1][0][0])) and label == int(truth["train"][1][1][0, 0])
    test = ModelNet40H5(tmp_path / "h5", "test", transform=SubsamplePoints(300))
    assert len(test) == 2 and test[0][0].shape == (300, 3)


def test_h5_missing_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"shape_names\.txt.*train_files\.txt.*into '.*nope'"):
        ModelNet40H5(tmp_path / "nope")
    write_h5_release(tmp_path / "h5")
    (tmp_path / "h5" / "ply_data_train1.h5").unlink()
    with pytest.raises(FileNotFoundError, match=r"ply_data_train1\.h5"):
        ModelNet40H5(tmp_path / "h5", "train")
    with pytest.raises(ValueError, match="Expected 'split'"):
        ModelNet40H5(tmp_path / "h5", "val")


CUBE_OFF = """OFF
# unit cube, quads
8 6 0
0 0 0
1 0 0
1 1 0
0 1 0
0 0 1
1 0 1
1 1 1
0 1 1
4 0 3 2 1
4 4 5 6 7
4 0 1 5 4
4 2 3 7 6
4 1 2 6 5
4 0 4 7 3
"""
# ModelNet quirk: counts glued to the header.
TRI_OFF = "OFF3 1 0\n0 0 0\n2 0 0\n0 2 0\n3 0 1 2\n"


def test_read_off_and_area_weighted_sampling(tmp_path):
    (tmp_path / "cube.off").write_text(CUBE_OFF)
    (tmp_path / "tri.off").write_text(TRI_OFF)
    v, f = read_off(tmp_path / "cube.off")
    assert v.shape == (8, 3) and f.shape == (12, 3)
    v2, f2 = read_off(tmp_path / "tri.off")
    assert f2.tolist() == [[0, 1, 2]]
    g = torch.Generator().manual_seed(0)
    pts = sample_surface(v, f, 4000, generator=g)
    # Every point lies on the cube surface: some coordinate is 0 or 1, all within [0, 1].
    on_face = ((pts.abs() < 1e-5) | ((pts - 1).abs() < 1e-5)).any(dim=1)
    assert on_face.all() and pts.min() >= -1e-6 and pts.max() <= 1 + 1e-6
    # Area weighting: each of the 6 equal faces receives about 1/6 of the points.
    counts = torch.stack(
        [(pts[:, k] < 1e-5).sum() for k in range(3)] + [(pts[:, k] > 1 - 1e-5).sum() for k in range(3)]
    )
    assert (counts.float() / 4000 - 1 / 6).abs().max() < 0.03
    # Inside a triangle, uniformity: the mean is the centroid.
    tri = sample_surface(v2, f2, 20000, generator=g)
    assert torch.allclose(tri.mean(0), torch.tensor([2 / 3, 2 / 3, 0.0]), atol=0.03)
    assert torch.equal(sample_surface(v, f, 10, torch.Generator().manual_seed(1)),
                       sample_surface(v, f, 10, torch.Generator().manual_seed(1)))  # fmt: skip
    with pytest.raises(ValueError, match="Expected 'header'"):
        (tmp_path / "bad.off").write_text("PLY\n")
        read_off(tmp_path / "bad.off")


def test_off_dataset_layout(tmp_path):
    base = tmp_path / "ModelNet40"
    for cls, text in (("chair", CUBE_OFF), ("airplane", TRI_OFF)):
        for split in ("train", "test"):
            (base / cls / split).mkdir(parents=True)
            (base / cls / split / f"{cls}_0001.off").write_text(text)
    (base / "chair" / "train" / "chair_0002.off").write_text(CUBE_OFF)
    ds = ModelNetOFF(tmp_path, "train", num_points=64, seed=0)
    assert ds.classes == ["airplane", "chair"] and len(ds) == 3
    assert [int(label) for label in ds.labels] == [0, 1, 1]
    assert ds[0][0].shape == (64, 3) and torch.allclose(ds[0][0][:, 2], torch.zeros(64))
    again = ModelNetOFF(base, "train", num_points=64, seed=0)
    assert torch.equal(again.points, ds.points)
    assert not torch.equal(ds.points[1], ds.points[2])  # different seeds per shape
    with pytest.raises(FileNotFoundError, match=r"'.*empty/<class>/test/<name>\.off'"):
        ModelNetOFF(tmp_path / "empty", "test")


def test_haar_rotation_properties():
    g = torch.Generator().manual_seed(0)
    r = random_rotation(g, torch.float64, batch=2000)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(r.transpose(1, 2) @ r, eye.expand(2000, 3, 3), atol=1e-10)
    assert torch.allclose(torch.linalg.det(r), torch.ones(2000, dtype=torch.float64), atol=1e-10)
    # Haar: E[R] = 0 and the rotation angle has density (1 - cos θ)/π, so E[trace R] = 0.
    assert r.mean(0).abs().max() < 0.06
    assert r.diagonal(dim1=1, dim2=2).sum(-1).mean().abs() < 0.1


def test_transforms():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 3, generator=g) * 3 + 5
    y = RandomRotation(g)(x)
    mode = "donot_use_mm_for_euclid_dist"
    assert torch.allclose(torch.cdist(y, y, compute_mode=mode), torch.cdist(x, x, compute_mode=mode), atol=1e-4)
    z = NormalizeUnitSphere()(x)
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=1e-5)
    assert math.isclose(float(z.norm(dim=1).max()), 1.0, rel_tol=1e-6)
    s = SubsamplePoints(300, g)(x)
    assert s.shape == (300, 3) and len({tuple(p.tolist()) for p in s}) == 300
    with pytest.raises(ValueError, match="Expected 'number of points'"):
        SubsamplePoints(600)(x)
    out = Compose([RandomRotation(g), NormalizeUnitSphere(), SubsamplePoints(300, g)])(x)
    assert out.shape == (300, 3)


def test_random_point_drop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 3, generator=g)
    fractions = []
    for _ in range(200):
        y, keep = random_point_drop(x, 0.85, g)
        assert y.shape == x.shape and keep.any()
        assert torch.equal(y[keep], x[keep])
        kept_rows = {tuple(p.tolist()) for p in x[keep]}
        assert {tuple(p.tolist()) for p in y} == kept_rows  # dropped rows are copies of kept points
        fractions.append(1 - keep.float().mean().item())
    assert max(fractions) < 0.85 + 0.06 and min(fractions) < 0.05 and max(fractions) > 0.7
    assert abs(sum(fractions) / len(fractions) - 0.425) < 0.06
    assert RandomPointDrop(0.5, g)(x).shape == x.shape
    with pytest.raises(ValueError, match="Expected 'p_max' to be in"):
        RandomPointDrop(1.0)


def test_synthetic_shapes():
    ds = SyntheticShapes(num_per_class=3, num_points=128, seed=1)
    assert len(ds) == 12 and ds.classes == ["sphere", "cube", "cylinder", "cone"]
    pts, label = ds[4]
    assert pts.shape == (128, 3) and label == 1
    assert torch.equal(SyntheticShapes(3, 128, seed=1).points, ds.points)
    with pytest.raises(ValueError, match="Expected 'classes'"):
        SyntheticShapes(classes=["torus"])


def test_class_accuracy_is_the_mean_of_per_class_accuracies():
    """Classes 0, 1, 2 with 4, 1, 1 samples: per-class accuracies 3/4, 0, 1 → mAcc 7/12 (instance 4/6)."""
    from constrained_eq.run.evaluate import evaluate_split
    from constrained_eq.tasks.modelnet import ModelNet

    labels = torch.tensor([0, 0, 0, 0, 1, 2])
    predicted = torch.tensor([0, 0, 0, 2, 0, 2])
    logits = torch.nn.functional.one_hot(predicted, 3).float()
    task = ModelNet.__new__(ModelNet)  # only the metric methods are used: no data needed
    batches = [(logits[:4], labels[:4]), (logits[4:], labels[4:])]  # split across batches on purpose
    summaries = [task.batch_summary(out, (None, y)) for out, y in batches]
    assert task.aggregate(summaries) == {"class_accuracy": pytest.approx(7 / 12)}

    class Lookup(torch.nn.Module):  # returns the logits of the batch it is given
        def __init__(self) -> None:
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return x

    metrics = evaluate_split(task, Lookup(), batches, equivariance=False)
    assert metrics["class_accuracy"] == pytest.approx(7 / 12) and metrics["accuracy"] == pytest.approx(4 / 6)
