import numpy as np
import pytest
import torch

from constrained_eq.data.mocap import (
    MocapEGNO,
    forward_kinematics,
    parse_amc,
    parse_asf,
    skeleton_graph,
    synthetic_mocap,
    synthetic_walker,
)

ASF = """# AST/ASF file generated using VICON BodyLanguage
# -----------------------------------------------
:version 1.10
:name VICON
:units
  mass 1.0
  length 0.45
  angle deg
:documentation
   .ast/.asf automatically generated from VICON data using
   VICON BodyBuilder and BodyLanguage model FoxtrotGRACE3
:root
   order TX TY TZ RX RY RZ
   axis XYZ
   position 0 0 0
   orientation 0 0 0
:bonedata
  begin
     id 1
     name lfemur
     direction 1 0 0
     length 2
     axis 0 0 0  XYZ
    dof rx ry rz
    limits (-160.0 20.0)
           (-70.0 70.0)
           (-60.0 70.0)
  end
  begin
     id 2
     name ltibia
     direction 0 -1 0
     length 3
     axis 0 0 0  XYZ
    dof rx
    limits (-10.0 170.0)
  end
  begin
     id 3
     name rfemur
     direction -1 0 0
     length 1
     axis 0 0 90  XYZ
    dof rx rz
    limits (-160.0 20.0)
           (-70.0 60.0)
  end
:hierarchy
  begin
    root lfemur rfemur
    lfemur ltibia
  end
"""

AMC = """#!OML:ASF F:\\VICON\\USERDATA\\INSTALL\\rory3\\rory3.ASF
:FULLY-SPECIFIED
:DEGREES
1
root 0 0 0 0 0 0
lfemur 0 0 0
ltibia 0
rfemur 0 0
2
root 1 2 3 0 0 0
lfemur 0 0 90
ltibia 0
rfemur 0 90
3
root 0 0 0 0 0 90
lfemur 0 0 0
ltibia 90
rfemur 90 0
"""


def test_parse_asf_and_amc(tmp_path):
    (tmp_path / "s.asf").write_text(ASF)
    (tmp_path / "s.amc").write_text(AMC)
    skel = parse_asf(tmp_path / "s.asf")
    assert skel.joint_names == ["root", "lfemur", "ltibia", "rfemur"]
    assert skel.parent == {"lfemur": "root", "rfemur": "root", "ltibia": "lfemur"}
    assert skel.bones["rfemur"].dof == ("rx", "rz") and skel.bones["rfemur"].axis.tolist() == [0, 0, 90]
    assert skel.bones["ltibia"].length == 3.0
    frames = parse_amc(tmp_path / "s.amc")
    assert len(frames) == 3 and frames[1]["root"] == [1, 2, 3, 0, 0, 0] and frames[2]["ltibia"] == [90]


def test_forward_kinematics_hand_computed(tmp_path):
    (tmp_path / "s.asf").write_text(ASF)
    (tmp_path / "s.amc").write_text(AMC)
    pos = forward_kinematics(parse_asf(tmp_path / "s.asf"), parse_amc(tmp_path / "s.amc"))
    assert pos.shape == (3, 4, 3)
    expected = torch.tensor(
        [
            # zero angles: bones laid along their directions
            [[0, 0, 0], [2, 0, 0], [2, -3, 0], [-1, 0, 0]],
            # root moved to (1,2,3); lfemur rz=90 turns x→y and carries ltibia (−y → +x);
            # rfemur rz=90 with axis Rz(90): C Rz C⁻¹ = Rz(90) turns −x → −y
            [[1, 2, 3], [1, 4, 3], [4, 4, 3], [1, 1, 3]],
            # root yaw Rz(90); ltibia rx=90 turns −y → −z; rfemur rx=90 about C·x = y turns −x → +z
            [[0, 0, 0], [0, 2, 0], [0, 2, -3], [0, 0, 1]],
        ],
        dtype=torch.float64,
    )
    assert torch.allclose(pos, expected, atol=1e-12)
    scaled = forward_kinematics(parse_asf(tmp_path / "s.asf"), parse_amc(tmp_path / "s.amc"), length_scale=2.0)
    assert torch.allclose(scaled, 2 * expected, atol=1e-12)


def test_skeleton_graph_has_bone_and_hinge_edges():
    ei, ea = skeleton_graph(4, [(0, 1), (1, 2), (0, 3)])
    edges = {(i, j): int(a) for (i, j), a in zip(ei.t().tolist(), ea.view(-1).tolist(), strict=True)}
    assert edges[(0, 1)] == edges[(1, 0)] == edges[(1, 2)] == edges[(0, 3)] == 1
    assert edges[(0, 2)] == edges[(2, 0)] == edges[(1, 3)] == edges[(3, 1)] == 2  # second-order hinges
    assert (2, 3) not in edges and all(i != j for i, j in edges)
    assert len(edges) == 10


def _write_subject(root, subject, n_trials, n_frames):
    folder = root / f"{subject:02d}"
    folder.mkdir(parents=True)
    (folder / f"{subject:02d}.asf").write_text(ASF)
    rng = np.random.default_rng(subject)
    for trial in range(1, n_trials + 1):
        lines = [":FULLY-SPECIFIED", ":DEGREES"]
        for f in range(1, n_frames + 1):
            a = rng.normal(size=6) * 10
            lines += [str(f), f"root {f * 0.1} 0 0 0 {a[0]:.3f} 0", f"lfemur {a[1]:.3f} {a[2]:.3f} 0",
                      f"ltibia {a[3]:.3f}", f"rfemur {a[4]:.3f} {a[5]:.3f}"]  # fmt: skip
        (folder / f"{subject:02d}_{trial:02d}.amc").write_text("\n".join(lines) + "\n")


def test_egno_dataset_on_written_files(tmp_path):
    _write_subject(tmp_path, 9, n_trials=11, n_frames=50)  # 11 trials → the reference run split
    train = MocapEGNO(tmp_path, subject=9, split="train", delta_frame=10)
    test = MocapEGNO(tmp_path, subject=9, split="test", delta_frame=10)
    assert train.trials == [2, 3, 6, 7, 11] and test.trials == [4, 8]
    assert len(train) == 5 * 39 and len(test) == 2 * 39  # min(50 per trial, 49 - 10 start frames)
    d = train[0]
    assert d.pos.shape == d.vel.shape == d.y.shape == (4, 3) and d.edge_attr.shape[1] == 1
    # Consistency with forward kinematics of the same trial.
    skel = parse_asf(tmp_path / "09" / "09.asf")
    traj = forward_kinematics(skel, parse_amc(tmp_path / "09" / "09_02.amc"))
    x = traj[:-1] - traj[:-1].mean()
    t = d.frame
    assert torch.allclose(d.pos.double(), x[t], atol=1e-5) and torch.allclose(d.y.double(), x[t + 10], atol=1e-5)
    assert torch.allclose(d.vel.double(), traj[t + 1] - traj[t], atol=1e-5)
    again = MocapEGNO(tmp_path, subject=9, split="train", delta_frame=10)
    assert [s.frame for s in again.samples] == [s.frame for s in train.samples]


def test_egno_dataset_other_trial_counts_and_errors(tmp_path):
    _write_subject(tmp_path, 35, n_trials=4, n_frames=40)
    parts = [MocapEGNO(tmp_path, subject=35, split=s, delta_frame=5).trials for s in ("train", "val", "test")]
    assert sorted(sum(parts, [])) == [1, 2, 3, 4] and len(parts[0]) == 2
    with pytest.raises(FileNotFoundError, match=r"35_07\.amc.*into '.*35'"):
        MocapEGNO(tmp_path, subject=35, trials=[1, 7])
    with pytest.raises(FileNotFoundError, match=r"09\.asf.*09_<TT>\.amc"):
        MocapEGNO(tmp_path / "none", subject=9)
    with pytest.raises(ValueError, match="Expected 'subject'"):
        MocapEGNO(tmp_path, subject=1)


def test_synthetic_walker_preserves_bone_lengths():
    skel, pos = synthetic_walker(60, seed=2)
    assert pos.shape == (60, 9, 3)
    names = skel.joint_names
    for child, par in skel.parent.items():
        lengths = (pos[:, names.index(child)] - pos[:, names.index(par)]).norm(dim=-1)
        assert torch.allclose(lengths, torch.full_like(lengths, skel.bones[child].length), atol=1e-9)
    samples = synthetic_mocap(num_trials=2, num_frames=50, delta_frame=10)
    assert len(samples) == 2 * 39 and samples[0].pos.shape == (9, 3)
