import sys
from pathlib import Path

import pytest
import torch

from constrained_eq.data.qm9 import (
    HAR2EV,
    QM9_TARGETS,
    QM9PACK_FILES,
    QM9Pack,
    parse_qm9pack_csv,
    qm9_from_pyg_root,
    qm9_split,
    qm9pack_data_dir,
    synthetic_qm9,
)

HEADER = (
    "XYZ_file,Index,SMILES,InChi,N_atoms,Stoichiometry,Elements,XYZ_Ang,Mulliken_pop,Harmonic_Freq_cmi,"
    "RotA_GHz,RotB_GHz,RotC_GHz,Dipole_debye,Polarizability_bohr3,HOMO_au,LUMO_au,HOMO_LUMO_gap_au,R2_bohr2,"
    "ZPVE_au,InternalEnergy_0K_au,InternalEnergy_298K_au,Enthalphy_298K_au,GibbsFreeEnergy_298K_au,"
    "Heatcapacity_Cv_cal_mol_K"
)
# (index, smiles, symbols, coords, [A, B, C, mu, alpha, homo, lumo, gap, r2, zpve, U0, U, H, G, cv])
MOLS = [
    (1, "C", "CHHHH",
     [[-0.0126981359, 1.0858041578, 0.0080009958], [0.002150416, -0.0060313176, 0.0019761204],
      [1.0117308433, 1.4637511618, 0.0002765748], [-0.540815069, 1.4475266138, -0.8766437152],
      [-0.5238136345, 1.4379326443, 0.9063972942]],
     [157.7118, 157.70997, 157.70699, 0.0, 13.21, -0.3877, 0.1171, 0.5048, 35.3641, 0.044749, -40.47893,
      -40.476062, -40.475117, -40.498597, 6.469]),
    (2, "N", "NHHH",
     [[-0.0404260543, 1.0241077531, 0.0625637998], [0.0172574639, 0.0125452063, -0.0273771593],
      [0.9157893661, 1.3587451948, -0.0287577581], [-0.5202777357, 1.3435321258, -0.7755426124]],
     [293.60975, 293.54111, 191.39397, 1.6256, 9.46, -0.257, 0.0829, 0.3399, 26.1563, 0.034358, -56.525887,
      -56.523026, -56.522082, -56.544961, 6.316]),
    (3, "O", "OHH",
     [[-0.0343604951, 0.9775395708, 0.0], [0.0647664923, 0.0, 0.0015346341], [0.8717903737, 1.3007924048, 0.0]],
     [799.58812, 437.90386, 282.94545, 1.8511, 6.31, -0.2928, 0.0687, 0.3615, 19.0002, 0.021375, -76.404702,
      -76.401867, -76.400922, -76.422349, 6.002]),
]  # fmt: skip
# Free-atom energies (Hartree) for U0, U, H, G of H, C, N, O (QM9 atomref table).
REF = {
    "H": (-0.500273, -0.498857, -0.497912, -0.510927),
    "C": (-37.846772, -37.845355, -37.844411, -37.861317),
    "N": (-54.583861, -54.582445, -54.581501, -54.598897),
    "O": (-75.064579, -75.063162, -75.062219, -75.079532),
}


def _num(v: float) -> str:
    """Mathematica-style number as in qm9pack ("0." for zero, "1." for one)."""
    return f"{v:.0f}." if float(v).is_integer() else repr(v)


def write_qm9pack_csv(path: Path, mols) -> None:
    lines = [HEADER]
    for idx, smi, sym, xyz, p in mols:
        A, B, C, mu, alpha, homo, lumo, gap, r2, zpve, u0, u, h, g, cv = p
        elements = "[" + ",".join(f"'{s}'" for s in sym) + "]"
        coords = "[" + ",".join("[" + ",".join(_num(c) for c in row) + "]" for row in xyz) + "]"
        nums = ",".join(_num(v) for v in (A, B, C, mu, alpha, homo, lumo, gap, r2, zpve, u0, u, h, g, cv))
        lines.append(
            f'"dsgdb9nsd_{idx:06d}.xyz",{idx},"{smi}","InChI=1S/x",{len(sym)},"[0,0,0,0,0]","{elements}",'
            f'"{coords}","[0.1]","[1.0]",{nums}'
        )
    path.write_text("\n".join(lines) + "\n")


def write_qm9pack_dir(folder: Path, mols) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_qm9pack_csv(folder / "qm9_part1.csv", mols[:2])
    write_qm9pack_csv(folder / "qm9_part2.csv", mols[2:])
    write_qm9pack_csv(folder / "qm9_part3.csv", [])
    return folder


def expected_y(mol) -> torch.Tensor:
    _, _, sym, _, p = mol
    A, B, C, mu, alpha, homo, lumo, gap, r2, zpve, u0, u, h, g, cv = p
    atom = [(e - sum(REF[s][k] for s in sym)) * HAR2EV for k, e in enumerate((u0, u, h, g))]
    y = [mu, alpha, homo * HAR2EV, lumo * HAR2EV, gap * HAR2EV, r2, zpve * HAR2EV, u0 * HAR2EV, u * HAR2EV,
         h * HAR2EV, g * HAR2EV, cv, *atom, A, B, C]  # fmt: skip
    return torch.tensor(y, dtype=torch.float64)


def test_parser_reads_exact_qm9pack_format(tmp_path):
    write_qm9pack_csv(tmp_path / "p.csv", MOLS)
    data = list(parse_qm9pack_csv(tmp_path / "p.csv"))
    assert [d.name for d in data] == ["gdb_1", "gdb_2", "gdb_3"] and [d.idx for d in data] == [0, 1, 2]
    assert data[0].z.tolist() == [6, 1, 1, 1, 1] and data[2].z.tolist() == [8, 1, 1]
    assert torch.allclose(data[2].pos.double(), torch.tensor(MOLS[2][3], dtype=torch.float64), atol=1e-6)
    for d, mol in zip(data, MOLS, strict=True):
        assert d.y.shape == (1, len(QM9_TARGETS))
        assert torch.allclose(d.y[0].double(), expected_y(mol), rtol=1e-6, atol=1e-4)
    # Known PyG values for methane (QM9[0].y): HOMO, U0, U0_atom in eV.
    assert data[0].y[0, 2].item() == pytest.approx(-10.5499, abs=1e-3)
    assert data[0].y[0, 7].item() == pytest.approx(-1101.4878, abs=1e-3)
    assert data[0].y[0, 12].item() == pytest.approx(-17.1722, abs=1e-3)
    assert len(list(parse_qm9pack_csv(tmp_path / "p.csv", limit=2))) == 2


def test_qm9pack_dataset_caches_and_limits(tmp_path):
    src = write_qm9pack_dir(tmp_path / "src", MOLS)
    ds = QM9Pack(tmp_path / "cache", source_dir=src)
    assert len(ds) == 3 and (tmp_path / "cache" / "processed" / "qm9pack_all.pt").is_file()
    assert torch.allclose(ds[2].y[0].double(), expected_y(MOLS[2]), rtol=1e-6, atol=1e-4)
    assert not list((tmp_path / "cache" / "processed").glob("*.tmp"))
    assert len(QM9Pack(tmp_path / "cache", source_dir=src, limit=2)) == 2
    for f in src.iterdir():
        f.unlink()
    assert len(QM9Pack(tmp_path / "cache", source_dir=src)) == 3  # served from the cache


def test_qm9pack_missing_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"qm9_part1\.csv.*into '.*nowhere'"):
        QM9Pack(tmp_path / "cache", source_dir=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="Expected 'limit'"):
        QM9Pack(tmp_path / "cache", source_dir=tmp_path, limit=0)


def test_real_qm9pack_package(tmp_path):
    folder = qm9pack_data_dir()
    if folder is None or not all((folder / f).is_file() for f in QM9PACK_FILES):
        pytest.skip("optional package 'qm9pack' is not installed (pip install qm9pack, extra 'qm9')")
    n = 0
    for f in QM9PACK_FILES:
        with open(folder / f, "rb") as fh:
            n += sum(1 for _ in fh) - 1
    assert n == 130_831
    ds = QM9Pack(tmp_path / "cache", limit=200)
    assert len(ds) == 200 and ds[0].name == "gdb_1"
    assert torch.allclose(ds[0].y[0].double(), expected_y(MOLS[0]), rtol=1e-6, atol=1e-4)
    assert ds[3].pos.shape == (4, 3)  # acetylene, coordinates written as "0." / "1."
    assert set(torch.cat([ds[i].z for i in range(200)]).tolist()) <= {1, 6, 7, 8, 9}


def test_split_is_seeded_and_80_10_10():
    s = qm9_split(1000, seed=3)
    assert [len(s[k]) for k in ("train", "val", "test")] == [800, 100, 100]
    assert torch.equal(torch.sort(torch.cat(list(s.values()))).values, torch.arange(1000))
    assert torch.equal(qm9_split(1000, seed=3)["val"], s["val"])
    assert not torch.equal(qm9_split(1000, seed=4)["val"], s["val"])


# --------------------------------------------------------------------- PyG's own QM9 on a local root
def write_pyg_raw(raw: Path, mols, uncharacterized=(3,)) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    sdf = []
    for idx, _, sym, xyz, _ in mols:
        heavy = [i for i, s in enumerate(sym) if s != "H"][0]
        bonds = [(heavy, i) for i in range(len(sym)) if i != heavy]
        sdf += [f"gdb_{idx}", "     RDKit          3D", ""]
        sdf.append(f"{len(sym):3d}{len(bonds):3d}  0  0  0  0  0  0  0  0999 V2000")
        for s, (x, y, z) in zip(sym, xyz, strict=True):
            sdf.append(f"{x:10.4f}{y:10.4f}{z:10.4f} {s:<3} 0" + "  0" * 11)
        sdf += [f"{a + 1:3d}{b + 1:3d}  1  0" for a, b in bonds]
        sdf += ["M  END", "$$$$"]
    (raw / "gdb9.sdf").write_text("\n".join(sdf) + "\n")
    rows = ["mol_id,A,B,C,mu,alpha,homo,lumo,gap,r2,zpve,u0,u298,h298,g298,cv,u0_atom,u298_atom,h298_atom,g298_atom"]
    for mol in mols:
        idx, _, sym, _, p = mol
        atom = [(e - sum(REF[s][k] for s in sym)) * 627.509474 for k, e in enumerate(p[10:14])]
        rows.append(",".join([f"gdb_{idx}", *(repr(v) for v in p), *(repr(v) for v in atom)]))
    (raw / "gdb9.sdf.csv").write_text("\n".join(rows) + "\n")
    head = ["Uncharacterized molecules"] + [f"header line {i}" for i in range(7)] + ["-" * 40]
    body = [f"  {i:6d}  CCC  CCC  1.0  1.0" for i in uncharacterized]
    (raw / "uncharacterized.txt").write_text("\n".join(head + body + ["-" * 40]) + "\n")


def test_pyg_root_with_rdkit_matches_qm9pack_parser(tmp_path):
    pytest.importorskip("rdkit", reason="PyG processes gdb9.sdf only with rdkit installed")
    write_pyg_raw(tmp_path / "qm9" / "raw", MOLS, uncharacterized=(3,))
    ds = qm9_from_pyg_root(tmp_path / "qm9")
    assert len(ds) == 2  # molecule 3 is listed as uncharacterized
    write_qm9pack_csv(tmp_path / "p.csv", MOLS[:2])
    ours = list(parse_qm9pack_csv(tmp_path / "p.csv"))
    for d, o in zip(ds, ours, strict=True):
        assert torch.equal(d.z, o.z) and torch.allclose(d.pos, o.pos, atol=1e-4)
        assert torch.allclose(d.y, o.y, rtol=1e-5, atol=1e-3)


def test_pyg_root_without_rdkit_reads_qm9_v3(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rdkit", None)  # makes `import rdkit` fail
    write_qm9pack_csv(tmp_path / "p.csv", MOLS)
    raw = tmp_path / "qm9" / "raw"
    raw.mkdir(parents=True)
    torch.save([d.to_dict() for d in parse_qm9pack_csv(tmp_path / "p.csv")], raw / "qm9_v3.pt")
    ds = qm9_from_pyg_root(tmp_path / "qm9")
    assert len(ds) == 3 and ds[1].z.tolist() == [7, 1, 1, 1]
    assert len(qm9_from_pyg_root(tmp_path / "qm9")) == 3  # reloads processed/data_v3.pt


@pytest.mark.parametrize("rdkit", [False, True])
def test_pyg_root_missing_raw_raises(tmp_path, monkeypatch, rdkit):
    if rdkit:
        pytest.importorskip("rdkit")
        pattern = r"gdb9\.sdf.*gdb9\.sdf\.csv.*uncharacterized\.txt.*raw"
    else:
        monkeypatch.setitem(sys.modules, "rdkit", None)
        pattern = r"qm9_v3\.pt.*raw'.*rdkit is not installed"
    with pytest.raises(FileNotFoundError, match=pattern):
        qm9_from_pyg_root(tmp_path / "empty")


def test_synthetic_qm9_is_deterministic_and_invariant():
    a, b = synthetic_qm9(5, seed=1), synthetic_qm9(5, seed=1)
    assert all(torch.equal(x.pos, y.pos) and torch.equal(x.y, y.y) for x, y in zip(a, b, strict=True))
    assert all(d.y.shape == (1, 19) and d.name.startswith("synthetic") for d in a)
    assert set(torch.cat([d.z for d in a]).tolist()) <= {1, 6, 7, 8, 9}
