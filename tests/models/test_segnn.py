import pytest
import torch
from e3nn import o3

from constrained_eq.data.nbody import fully_connected_edges
from constrained_eq.homotopy import HomotopicLayer, homotopic_layers
from constrained_eq.models.segnn import (
    SEGNN,
    SEGNNBranch,
    SEGNNProductBranch,
    nbody_segnn_inputs,
)
from constrained_eq.models.steerable import SteerableLinear, balanced_irreps
from constrained_eq.symmetry import E, IrrepsRep, assert_equivariant, cartesian_generators

SMALL = dict(hidden_nf=8, n_layers=2)


def _graphs(b=3, n=5, dtype=torch.float64):
    loc = torch.randn(b * n, 3, dtype=dtype)
    vel = torch.randn(b * n, 3, dtype=dtype)
    charges = torch.randint(0, 2, (b * n, 1)).to(dtype) * 2 - 1
    return loc, vel, charges, fully_connected_edges(b, n), torch.arange(b).repeat_interleave(n)


def _predict(model, loc, vel, charges, edges, batch):
    return loc + model(*nbody_segnn_inputs(loc, vel, charges, edges, batch, **model.input_options))


def _assert_e3_equivariant(model, dtype, e3_action, atol=None, rotate=True):
    """``assert_equivariant`` over E(3) (reflections too) of ``[loc, vel] ↦ loc'`` on 3 graphs of 5 nodes."""
    loc, vel, charges, edges, batch = _graphs(dtype=dtype)

    def predict(states):  # (B, 15, 2, 3) -> (B, 15, 3)
        return torch.stack([_predict(model, s[:, 0], s[:, 1], charges, edges, batch) for s in states])

    return assert_equivariant(predict, E(3), torch.stack([loc, vel], 1)[None], atol=atol,
                              act_in=e3_action(True, False, rotate=rotate), act_out=e3_action(True, rotate=rotate))


def _set_gammas(model, value):
    with torch.no_grad():
        for layer in homotopic_layers(model):
            layer.gamma.fill_(value)


def test_balanced_hidden_irreps_and_parameter_counts():
    assert balanced_irreps(64, 1, "0e+1o") == o3.Irreps("32x0e+32x1o")
    vanilla, relaxed = SEGNN(relaxed=False), SEGNN()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(vanilla) == 147_424  # ACE Table 3, SEGNN N-body (vanilla)
    assert count(relaxed) == 147_424 + 4 * (256 * 128 + 128 * 128 + 2)  # W_1, W_2, two γ per layer
    for layer in relaxed.layers:
        layer.update_layer_1, layer.update_layer_2 = layer.update_layer_1.eq, layer.update_layer_2.eq
    assert list(relaxed.state_dict()) == list(vanilla.state_dict())


def test_ace_placement_parameter_count_and_projection_keys():
    vanilla, relaxed = SEGNN(relaxed=False), SEGNN(placement="ace")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # dense bias-free W over vec(z ⊗ a) on both message sub-layers: z = [h_i, h_j, s_ij] (258) then h (128),
    # a = Y^{≤1} (4), out h (128); one γ each
    per_layer = 258 * 4 * 128 + 128 * 4 * 128 + 2
    assert count(relaxed) == 147_424 + 4 * per_layer == 937_960  # ACE Table 3, SEGNN N-body (constrained)
    assert len(list(homotopic_layers(relaxed))) == 8
    for layer in relaxed.layers:
        assert isinstance(layer.message_layer_1.neq, SEGNNProductBranch)
        assert not isinstance(layer.update_layer_1, HomotopicLayer)
        layer.message_layer_1, layer.message_layer_2 = layer.message_layer_1.eq, layer.message_layer_2.eq
    assert list(relaxed.state_dict()) == list(vanilla.state_dict())


def test_unknown_placement_raises():
    with pytest.raises(ValueError, match=r"Expected 'placement' to be one of 'cr', 'ace' \(got 'egnn'\)"):
        SEGNN(**SMALL, placement="egnn")


def test_product_branch_is_a_dense_map_of_the_outer_product_with_a_kronecker_sum_action():
    irreps_x, irreps_a, irreps_out = o3.Irreps("1x0e+1x1o"), o3.Irreps("0e+1o"), o3.Irreps("2x0e+1x1o")
    branch = SEGNNProductBranch(irreps_x, irreps_a, irreps_out).double()
    x, a = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    expected = torch.einsum("oij,ni,nj->no", branch.net.weight.view(5, 4, 4), x, a)
    torch.testing.assert_close(branch(x, a), expected)
    # a Clebsch–Gordan tensor product is the equivariant special case: its matrix on vec(x ⊗ a) has L_A(W) = 0
    tp = o3.FullyConnectedTensorProduct(irreps_x, irreps_a, irreps_out).double()
    eye = torch.eye(4, dtype=torch.float64)
    weight = torch.stack([tp(e_x[None], e_a[None])[0] for e_x in eye for e_a in eye]).T  # column i·4 + j
    lie = weight @ branch.net.algebra_in - branch.net.algebra_out @ weight
    assert weight.abs().max() > 0.1 and lie.abs().max() < 1e-12
    # and a generic dense W is not equivariant
    w = branch.net.weight
    assert (w @ branch.net.algebra_in - branch.net.algebra_out @ w).abs().max() > 1e-2


@pytest.mark.parametrize("placement", ["cr", "ace"])
def test_relaxed_placements_break_rotation_only_through_gamma(placement, dtype, e3_action):
    model = SEGNN(**SMALL, placement=placement).to(dtype)
    with pytest.raises(AssertionError, match=r"not E\(3\)-equivariant"):
        _assert_e3_equivariant(model, dtype, e3_action, atol=1e-3)
    _set_gammas(model, 0.0)
    _assert_e3_equivariant(model, dtype, e3_action)


@pytest.mark.parametrize("relaxed", [False, True])
def test_equivariant_at_gamma_zero(relaxed, dtype, e3_action):
    model = SEGNN(**SMALL, relaxed=relaxed).to(dtype)
    _set_gammas(model, 0.0)
    _assert_e3_equivariant(model, dtype, e3_action)  # E(3) samples are improper half of the time: 1o vectors


def test_relaxed_model_breaks_rotation_but_not_translation(dtype, e3_action):
    model = SEGNN(**SMALL).to(dtype)
    assert len(list(homotopic_layers(model))) == 4
    _set_gammas(model, 1.0)
    with pytest.raises(AssertionError, match=r"not E\(3\)-equivariant"):
        _assert_e3_equivariant(model, dtype, e3_action, atol=1e-3)
    _assert_e3_equivariant(model, dtype, e3_action, rotate=False)


def test_irreps_algebra_generates_e3nn_wigner_matrices():
    irreps = o3.Irreps("2x1o+1x0e+1x2e")
    alg = IrrepsRep(irreps).lie_algebra(torch.float64)
    gens = alg[:, 0:3, 0:3]
    for k in range(3):
        rot = torch.linalg.matrix_exp(0.4 * gens[k])
        # e3nn builds its Wigner matrices from float32 generators: agreement to ~1e-6 only
        torch.testing.assert_close(irreps.D_from_matrix(rot), torch.linalg.matrix_exp(0.4 * alg[k]), atol=1e-5, rtol=0)


def test_lie_derivative_of_an_e3nn_equivariant_linear_map_vanishes():
    irreps_in, irreps_out = o3.Irreps("2x0e+2x1o+1x2e"), o3.Irreps("1x0e+3x1o+2x2e")
    lin = o3.Linear(irreps_in, irreps_out).double()
    weight = lin(torch.eye(irreps_in.dim, dtype=torch.float64)).T
    a_in, a_out = IrrepsRep(irreps_in).lie_algebra(torch.float64), IrrepsRep(irreps_out).lie_algebra(torch.float64)
    assert (weight @ a_in - a_out @ weight).abs().max() < 1e-12
    branch = SEGNNBranch(irreps_in, irreps_out, init_std=1e-4)
    assert branch.net.weight.std() < 1e-3
    assert branch.net.algebra_in.shape == (3, irreps_in.dim, irreps_in.dim)


def test_update_layers_are_homotopic():
    model = SEGNN(**SMALL)
    layer = model.layers[0]
    assert isinstance(layer.update_layer_1, HomotopicLayer) and isinstance(layer.update_layer_2, HomotopicLayer)
    assert isinstance(layer.update_layer_1.neq, SEGNNBranch)
    model.reset_parameters()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match=r"Expected 'n_layers' to be a positive int \(got 0\)"):
        SEGNN(n_layers=0)
    with pytest.raises(ValueError, match=r"Expected 'lmax_h' to be a non-negative int \(got -1\)"):
        SEGNN(lmax_h=-1)


def test_adam_steps_reduce_mse():
    model = SEGNN(**SMALL, gamma_init=0.1, neq_init_std=1e-4)
    loc, vel, charges, edges, batch = _graphs(b=4, dtype=torch.float32)
    target = loc + vel + 0.1 * torch.randn_like(loc)
    inputs = nbody_segnn_inputs(loc, vel, charges, edges, batch)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(loc + model(*inputs), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_float64_generators_match_e3nn():
    torch.testing.assert_close(IrrepsRep("1o").lie_algebra(torch.float64), cartesian_generators(3, dtype=torch.float64),
                               atol=1e-15, rtol=0)
    for deg in range(4):
        torch.testing.assert_close(IrrepsRep(f"1x{deg}e").lie_algebra(torch.float64).float(), o3.so3_generators(deg),
                                   atol=1e-5, rtol=0)


REFERENCE_CHOICES = dict(weight_init="uniform", weight_scaling=True, bias_init="uniform", edge_vector="x_j-x_i",
                         distance="norm", attr_scalar=1.0)


def _fan_in(layer):
    """Fan-in of each output block of ``layer.tp``, counted by hand from the instructions."""
    fans = {}
    for ins in layer.tp.instructions:
        fans[ins.i_out] = fans.get(ins.i_out, 0) + layer.tp.irreps_in1[ins.i_in1].mul * layer.tp.irreps_in2[ins.i_in2].mul
    return fans


def test_reference_initialisation_statistics():
    """SEGNN's code: θ ~ U(±1/√fan_in) per output block, effective W = √fan_in θ ~ U(−1, 1), b ~ U(±1/√fan_in)."""
    torch.manual_seed(0)
    layer = SteerableLinear("40x0e+30x1o", "32x0e+32x1o", "2x0e+1x1o", gate=True,
                            weight_init="uniform", weight_scaling=True, bias_init="uniform")
    fans = _fan_in(layer)
    assert sorted(set(fans.values())) == [100, 110]  # 0e: 40·2 + 30·1 (1o ⊗ 1o); 1o: 40·1 + 30·2
    effective = []
    for weight, ins in zip(layer.tp.weight_views(), layer.tp.instructions, strict=True):
        bound = fans[ins.i_out] ** -0.5
        assert weight.abs().max() <= bound and weight.abs().max() > 0.95 * bound
        effective.append((weight * fans[ins.i_out] ** 0.5).flatten())
    effective = torch.cat(effective)
    assert abs(effective.var().item() - 1 / 3) < 0.02 and abs(effective.mean().item()) < 0.02
    bias_bound = 110 ** -0.5  # every 0e output (scalars and gates) has fan-in 110
    assert layer.bias.abs().max() <= bias_bound and layer.bias.abs().max() > 0.9 * bias_bound


def test_weight_scaling_keeps_the_function_and_scales_adam_steps_by_root_fan_in():
    """Same draw, same function; one Adam step moves the effective weight √fan_in times further."""
    x, attr = torch.randn(40, o3.Irreps("4x0e+3x1o").dim), torch.randn(40, 5)
    layers = []
    for scaling in (False, True):
        torch.manual_seed(3)
        layers.append(SteerableLinear("4x0e+3x1o", "5x0e+2x1o", "2x0e+1x1o", weight_init="uniform",
                                      weight_scaling=scaling))
    torch.testing.assert_close(layers[0](x, attr), layers[1](x, attr))
    moved = []
    for layer in layers:
        before = [w.clone() for w in layer.tp.weight_views()]
        opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
        layer(x, attr).pow(3).sum().backward()
        opt.step()
        moved.append([(w - b).abs() for w, b in zip(layer.tp.weight_views(), before, strict=True)])
    fans = _fan_in(layers[1])
    for ins, plain, scaled in zip(layers[1].tp.instructions, moved[0], moved[1], strict=True):
        root = fans[ins.i_out] ** 0.5
        torch.testing.assert_close(plain, torch.full_like(plain, 1e-3), rtol=1e-3, atol=0)  # Adam's first step: lr
        torch.testing.assert_close(scaled, plain, rtol=1e-3, atol=0)  # θ moves lr in both
        effective_scaled, effective_plain = scaled * root, plain  # W = √fan θ moves √fan lr; W = θ moves lr
        torch.testing.assert_close(effective_scaled / effective_plain, torch.full_like(plain, root), rtol=1e-3, atol=0)
    assert sorted(set(fans.values())) == [10, 11]  # 0e: 4·2 + 3·1 (1o ⊗ 1o); 1o: 4·1 + 3·2


def test_default_initialisation_is_unchanged():
    """The defaults draw e3nn's N(0, 1) over the whole weight vector at once and zero biases, as before."""
    torch.manual_seed(5)
    layer = SteerableLinear("4x0e+3x1o", "5x0e+2x1o", "1x0e+1x1o")
    torch.manual_seed(5)
    torch.randn(layer.tp.weight.shape)  # e3nn's own draw at construction, which reset_parameters replaces
    expected = torch.empty(layer.tp.weight.shape).normal_()
    torch.testing.assert_close(layer.tp.weight.detach(), expected, rtol=0, atol=0)
    assert (layer.bias == 0).all()


@pytest.mark.parametrize("placement", ["cr", "ace"])
def test_reference_choices_keep_the_model_equivariant(placement, dtype, e3_action):
    model = SEGNN(**SMALL, placement=placement, **REFERENCE_CHOICES).to(dtype)
    _set_gammas(model, 0.0)
    _assert_e3_equivariant(model, dtype, e3_action)


def test_reference_encoding_by_hand():
    """x_j − x_i harmonics, ‖r‖ message scalars, and a constant 0e node attribute, checked on one pair."""
    loc = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    vel = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    charges = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    edges = torch.tensor([[0, 1], [1, 0]])
    _, _, edge_attr, node_attr, msg = nbody_segnn_inputs(loc, vel, charges, edges, edge_vector="x_j-x_i",
                                                         distance="norm", attr_scalar=1.0)
    y1 = (3 / (4 * torch.pi)) ** 0.5  # integral-normalised l = 1 harmonic of a unit vector, components (x, y, z)
    torch.testing.assert_close(edge_attr[0, 1:], torch.tensor([0.0, 0.0, y1], dtype=torch.float64))  # x_1 − x_0 = +z
    torch.testing.assert_close(node_attr[:, 0], torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(node_attr[0, 1:], torch.tensor([y1, 0.0, y1], dtype=torch.float64))  # Y(+z) + Y(v = +x)
    torch.testing.assert_close(msg, torch.tensor([[2.0, -1.0], [2.0, -1.0]], dtype=torch.float64))
    _, _, _, default_attr, default_msg = nbody_segnn_inputs(loc, vel, charges, edges)
    torch.testing.assert_close(default_attr[0, 1:], torch.tensor([y1, 0.0, -y1], dtype=torch.float64))  # Y(−z) + Y(+x)
    torch.testing.assert_close(default_attr[:, 0], torch.full((2,), torch.pi ** -0.5, dtype=torch.float64))
    torch.testing.assert_close(default_msg[:, 0], torch.full((2,), 4.0, dtype=torch.float64))


def test_bad_reference_choices_raise():
    with pytest.raises(ValueError, match="'weight_init'"):
        SEGNN(**SMALL, weight_init="xavier")
    with pytest.raises(ValueError, match="'edge_vector'"):
        SEGNN(**SMALL, edge_vector="i-j")
    with pytest.raises(ValueError, match="'distance'"):
        SEGNN(**SMALL, distance="cubed")
    with pytest.raises(ValueError, match="'attr_scalar'"):
        SEGNN(**SMALL, attr_scalar="one")


def test_problem_files_carry_segnns_own_initialisation_and_encoding():
    """The shipped SEGNN problem files train the model the way SEGNN's own code does (reference-parity.md)."""
    from pathlib import Path

    from constrained_eq.run.problem_file import load_problem_file

    problems = Path(__file__).resolve().parents[2] / "problems"
    for name in ("nbody_segnn.yaml", "nbody_segnn_cr.yaml"):
        options = load_problem_file(problems / name)["model"]["options"]
        assert {key: options[key] for key in REFERENCE_CHOICES} == REFERENCE_CHOICES, name
