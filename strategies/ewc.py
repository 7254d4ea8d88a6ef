"""Elastic Weight Consolidation with a per-sample Fisher and one merged quadratic penalty.

**Penalty.** EWC (Kirkpatrick et al. 2017) adds, for every past experience k (parameters theta_k at
its end, diagonal Fisher F_k),

    (lambda / 2) * sum_k sum_i F_k,i (theta_i - theta_k,i)^2

to the training loss (the mean cross-entropy of the mini-batch). This is the convention of the EWC
paper and of van de Ven & Tolias (2019, "Three scenarios for continual learning"; their code:
``ewc_loss`` returns ``(1./2)*sum(losses)``, added as ``ewc_lambda * ewc_loss``), so their lambda
values can be used here as they are. Online EWC (Schwarz et al. 2018) keeps one running Fisher
F*_t = gamma F*_{t-1} + F_t, anchored at the latest parameters, and adds
(lambda / 2) * gamma * sum F*_t (theta - theta_t)^2: the gamma in front is Schwarz et al.'s
(the penalty of task t+1 is ||theta - theta*_t||^2 weighted by gamma F*_t) and van de Ven's code's
(``continual_learner.py``: the stored Fisher is ``est + gamma * existing``, and ``ewc_loss`` uses
``self.gamma*fisher``), so their (lambda, gamma) pairs carry over too.

**Fisher.** ``fisher`` chooses the estimator of the diagonal Fisher of an experience, each a mean
over its training samples (all of them, or ``fisher_samples`` drawn at random) with the model in
eval mode, of the squared gradient of one sample's negative log-likelihood -log p(y | x, theta):

- ``"predicted"`` (default): y = the model's predicted label. Van de Ven & Tolias 2019's default
  (their ``--emp-fi`` flag off: "use predicted labels"), the estimator their lambda values were
  chosen with.
- ``"empirical"``: y = the true label (the "empirical Fisher"; their ``--emp-fi``). The two differ
  only on the samples the model misclassifies.
- ``"expected"``: the exact Fisher of the model's predictive distribution,
  sum_c p(c | x) * grad(-log p(c | x))^2, one gradient per class (``n_classes`` times the cost).
  The default of van de Ven's later code (``--fisher-labels=all``, van de Ven, Tuytelaars & Tolias
  2022, "Three types of incremental learning").
- ``"batch"``: Avalanche's ``EWCPlugin.compute_importances``, the mean over mini-batches of the
  squared gradient of the *batch-mean* loss. Per-sample gradients of a batch of B average out
  before squaring, so this is about the per-sample Fisher divided by B (the cross terms vanish
  where per-sample gradients are uncorrelated; after the first experience of domain-IL Split MNIST,
  summed over the MLP's parameters, it was 105x smaller than the empirical Fisher at batch 128 and
  32x at batch 32): its scale depends on the training batch size, and lambda must be about B times
  larger for the same effect. Kept for comparison with Avalanche: ``fisher=batch`` with ``ewc_lambda=2L`` (EWC)
  or ``2L/decay_factor`` (online EWC) is Avalanche's ``EWC(ewc_lambda=L)``.

Under the harness's ``active_classes=seen`` (the class-IL training softmax covers the classes seen
so far), the Fisher's softmax covers the same classes, as van de Ven's ``allowed_classes`` do.

Per-sample gradients come from ``torch.func`` (``vmap(grad(...))`` over ``functional_call``), in
chunks bounded in memory and independent of the training batch size, except for ``nn.Linear``
layers, whose summed squared per-sample gradients are one matrix product (exact; see
:func:`fisher_diagonal`). A task-IL multi-head model gets each sample's task label
(``avalanche_forward``'s rule). A model ``vmap`` cannot transform falls back, with a warning, to
one backward pass per sample.

**Merged penalty.** Avalanche's ``EWCPlugin`` evaluates the sum over experiences term by term at
every step, so a step costs more with each experience. A sum of quadratics in theta is one
quadratic,

    sum_k F_k (theta - theta_k)^2 = A (theta - mu)^2 + c,   A = sum_k F_k,   mu = sum_k F_k theta_k / A,

so :class:`MergedEWCPlugin` keeps (A, mu, c) per parameter and pays one term per step, whatever the
number of experiences: the same loss value and gradient, and O(1) memory instead of a copy of the
model per experience. Online EWC is A <- gamma A + F, mu <- the latest parameters, c = 0.

**Defaults** are van de Ven & Tolias 2019's Split MNIST domain-IL values (EWC lambda = 1e6; online EWC
lambda = 1e8, gamma = 0.7), chosen there by grid search with their protocol (MLP 400-400, Adam lr
1e-3, batch 128, 2000 iterations per task, predicted-label Fisher over the whole task). Domain-IL,
not class-IL, because there EWC does something: on forgetbench's ``split_mnist scenario=domain``
(1 epoch, seeds 0-2) lambda = 1e6 lowers forgetting from naive's 0.430 / 0.406 / 0.318 to
0.364 / 0.309 / 0.298, while the class-IL value 1e8 raised it on seed 0 (0.445). Their values per
protocol and scenario, from the paper's code, GMvandeVen/continual-learning ``param_values.py``
lines 9-41 on its ``preprints`` branch (a02db26; added in commit f0b1461, Dec 2019, "Added default
(hyper)parameter-values based on chosen experiment and scenario", unchanged since). Its comparison script
(``_compare.py``, later ``compare_all.py``) runs EWC with ``--lambda``, online EWC with ``--o-lambda``
and ``--gamma``; the SI column is the source of ``si``'s defaults:

    ============== ====== ======== ======== ===================== ===================
    protocol       scen.  EWC lam. SI c     online EWC lambda     online EWC gamma
    ============== ====== ======== ======== ===================== ===================
    Split MNIST    task   1e7      50       1e8                   0.8
    Split MNIST    domain 1e6      500      1e8                   0.7
    Split MNIST    class  1e8      0.5      1e9                   0.8
    Permuted MNIST task   500      5        500                   0.8
    Permuted MNIST domain 500      5        1000                  0.9
    Permuted MNIST class  1        0.1      5                     1.0
    ============== ====== ======== ======== ===================== ===================

(Permuted MNIST there: 1000 units per hidden layer, lr 1e-4, 5000 iterations per task.) With the
"expected" Fisher, van de Ven et al. 2022 (the repository's current ``params/param_values.py``,
lines 120-138) use for Split MNIST lambda = 1e5 (task), 1e10 (domain), 1e9 (class).
"""
from __future__ import annotations

import collections
import warnings
from typing import Literal, Optional

import torch
from avalanche.models import MultiTaskModule
from avalanche.training.plugins import EWCPlugin
from avalanche.training.templates import SupervisedTemplate
from torch.nn import functional as F

from forgetbench.benchmarks.schema import Fraction, NonNegative, Positive
from forgetbench.strategies.registry import Memory, PerStream, register_strategy

Estimator = Literal["predicted", "empirical", "expected", "batch"]
ESTIMATORS = ("predicted", "empirical", "expected", "batch")
FISHER_CHUNK = 1024  # samples per batched forward pass
VMAP_FLOATS = 2**23  # the largest per-sample gradient tensor vmap holds at once: 32 MiB of float32


class _NotPlainLinear(Exception):
    """A linear layer called more than once per forward pass, or on inputs that are not [n, features]."""

    def __init__(self, module):
        super().__init__(module)
        self.module = module


def fisher_diagonal(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, *,
                    estimator: str = "predicted", method: str = "auto", chunk_size: Optional[int] = None,
                    classes: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """The diagonal Fisher, per parameter name: the mean over the samples (x, y, t) of the squared gradient
    of one sample's negative log-likelihood -log p(label | x, t) (``estimator``: the predicted, true
    (empirical) or every label weighted by its probability (expected); see the module docstring), with
    the model in eval mode (its mode is restored). Parameters that do not require a gradient get zeros.
    ``classes``: a boolean mask of the outputs the softmax covers (the others' logits are -inf), e.g.
    the classes seen so far when training does the same (``active_classes=seen``, as van de Ven's
    ``allowed_classes``); None: every output.

    ``method`` computes the same values three ways: ``"vmap"``: every per-sample gradient with
    ``torch.func.vmap(grad(...))``, in chunks of ``chunk_size`` samples (default: the largest
    parameter's per-sample gradients bounded by :data:`VMAP_FLOATS`); ``"loop"``: one backward pass
    per sample (also what a model with a parameter under two names gets instead of vmap: after
    ``functional_call`` on such a model, torch 2.14 leaves a plain tensor where the shared parameter
    was, which the optimizer no longer updates); ``"auto"``: as ``"vmap"``, except the weight and bias
    of each ``nn.Linear`` layer
    (called once per forward pass on [n, features] inputs), whose per-sample gradients are outer
    products delta_i a_i^T (delta_i: the layer's output gradient, a_i: its input), so that
    sum_i (delta_i a_i^T)^2 = (delta^2)^T (a^2): one batched backward pass and a matrix product,
    never the n x P per-sample gradients (~30x faster for the MLP on a CPU).
    """
    if estimator not in ESTIMATORS[:3]:
        raise ValueError(f"per-sample Fisher estimator must be one of {ESTIMATORS[:3]}, not {estimator!r}")
    if method not in ("auto", "vmap", "loop"):
        raise ValueError(f"method must be auto, vmap or loop, not {method!r}")
    linear = _linear_layers(model) if method == "auto" else {}
    if method != "loop" and _has_tied_tensors(model):
        method = "loop"  # functional_call would leave a plain tensor in place of a shared parameter (torch 2.x)
    was_training = model.training
    model.eval()
    try:
        while True:
            try:
                fisher = _fisher_sum(model, x, y, t, estimator, method, linear, chunk_size, classes)
                break
            except _NotPlainLinear as layer:  # its parameters go through vmap
                linear.pop(layer.module)
    finally:
        model.train(was_training)
    return {n: f / max(1, len(x)) for n, f in fisher.items()}


def _has_tied_tensors(model: torch.nn.Module) -> bool:
    """Whether a parameter or buffer is reachable under two names (a module used twice, tied weights)."""
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    return len({id(v) for _, v in named}) != len(named)


def _linear_layers(model: torch.nn.Module) -> dict[torch.nn.Module, tuple[str, str | None]]:
    """nn.Linear modules whose weight is trained and not shared: module -> (weight name, bias name or None)."""
    names = {id(p): n for n, p in model.named_parameters()}
    uses = collections.Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    layers = {}
    for module in model.modules():
        if type(module) is torch.nn.Linear and module.weight.requires_grad and uses[id(module.weight)] == 1:
            bias = module.bias
            plain_bias = bias is not None and bias.requires_grad and uses[id(bias)] == 1
            layers[module] = (names[id(module.weight)], names[id(bias)] if plain_bias else None)
    return layers


def _fisher_sum(model, x, y, t, estimator, method, linear, chunk_size, classes) -> dict[str, torch.Tensor]:
    """The sum over the samples of the per-sample squared gradients (see :func:`fisher_diagonal`)."""
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in model.named_parameters()}
    by_layer = {n for names in linear.values() for n in names if n}
    rest = [n for n, p in model.named_parameters() if p.requires_grad and n not in by_layer]
    largest = max((p.numel() for n, p in model.named_parameters() if n in rest), default=1)
    small = chunk_size or max(1, min(FISHER_CHUNK, VMAP_FLOATS // largest))
    for start in range(0, len(x), chunk_size or FISHER_CHUNK):
        xs, ys, ts = (v[start:start + (chunk_size or FISHER_CHUNK)] for v in (x, y, t))
        calls = {m: [] for m in linear}

        def record(module, inputs, out):  # the model goes on with a copy: an in-place op after it leaves ``out`` alone
            calls[module].append((inputs[0], out))
            return out.clone()

        hooks = [m.register_forward_hook(record) for m in linear]
        try:
            with torch.set_grad_enabled(bool(linear)):
                out = _forward(model, xs, ts, classes=classes)
        finally:
            for h in hooks:
                h.remove()
        for m, seen in calls.items():
            if len(seen) != 1 or seen[0][0].dim() != 2:
                raise _NotPlainLinear(m)
        targets = _targets(out.detach(), ys, estimator, classes)
        for k, (labels, weights) in enumerate(targets):
            if linear:
                loss = F.cross_entropy(out, labels, reduction="sum")  # sample i's term reaches only its own delta_i
                deltas = torch.autograd.grad(loss, [calls[m][0][1] for m in linear], retain_graph=k < len(targets) - 1,
                                             allow_unused=True)
                for (m, (w_name, b_name)), delta in zip(linear.items(), deltas):
                    if delta is None:  # the layer does not reach the output
                        continue
                    d2 = delta.float().pow(2)
                    if weights is not None:
                        d2 = d2 * weights[:, None]
                    fisher[w_name] += d2.T @ calls[m][0][0].detach().float().pow(2)
                    if b_name:
                        fisher[b_name] += d2.sum(0)
            for sub in range(0, len(xs), small) if rest else ():
                part = slice(sub, sub + small)
                grads = (_sample_grads if method != "loop" else _sample_grads_loop)(
                    model, rest, xs[part], ts[part], labels[part], classes)
                for n, g in grads.items():
                    _add_squares(fisher[n], g.float(), None if weights is None else weights[part])
    return fisher


def _forward(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, params=None, classes=None) -> torch.Tensor:
    """The model's output, with task labels for a multi-task model (as ``avalanche_forward``);
    through ``functional_call`` when ``params`` (parameters and buffers) are given; the logits of
    the outputs ``classes`` leaves out are -inf."""
    args = (x, t) if isinstance(model, MultiTaskModule) else (x,)
    out = model(*args) if params is None else torch.func.functional_call(model, params, args)
    return out if classes is None else out.masked_fill(~classes, float("-inf"))


def _targets(out: torch.Tensor, y: torch.Tensor, estimator: str,
             classes: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """[(labels, weights or None)]: the label(s) whose log-likelihood gradient is squared, for each sample."""
    if estimator == "empirical":
        return [(y, None)]
    if estimator == "predicted":
        return [(out.argmax(1), None)]
    probs = out.float().softmax(1)
    allowed = range(out.shape[1]) if classes is None else classes.nonzero().flatten().tolist()
    return [(torch.full_like(y, c), probs[:, c]) for c in allowed]


def _add_squares(acc: torch.Tensor, g: torch.Tensor, weights: torch.Tensor | None) -> None:
    """acc += sum_i w_i g_i^2 over the samples i (the first axis), one sample at a time (no second n x P tensor)."""
    if weights is not None:
        g.mul_(weights.sqrt().view(-1, *([1] * (g.dim() - 1))))
    for i in range(len(g)):
        acc.addcmul_(g[i], g[i])


def _sample_grads(model, names, x, t, labels, classes=None) -> dict[str, torch.Tensor]:
    """name -> [n, *shape]: each sample's gradient of -log p(label | x, t), by ``torch.func.vmap(grad(...))``."""
    params = {n: p.detach() for n, p in model.named_parameters() if n in names}
    fixed = {**{n: p.detach() for n, p in model.named_parameters() if n not in names}, **dict(model.named_buffers())}

    def nll(params, x, t, label):
        out = _forward(model, x.unsqueeze(0), t.unsqueeze(0), {**params, **fixed}, classes)
        return F.cross_entropy(out, label.unsqueeze(0))

    return torch.func.vmap(torch.func.grad(nll), in_dims=(None, 0, 0, 0))(params, x, t, labels)


def _sample_grads_loop(model, names, x, t, labels, classes=None) -> dict[str, torch.Tensor]:
    """As :func:`_sample_grads`, one backward pass per sample (for models ``vmap`` cannot transform)."""
    params = dict(model.named_parameters())
    out = {n: [] for n in names}
    for i in range(len(x)):
        with torch.enable_grad():
            loss = F.cross_entropy(_forward(model, x[i:i + 1], t[i:i + 1], classes=classes), labels[i:i + 1])
            grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
        for n, g in zip(names, grads):
            out[n].append(torch.zeros_like(params[n]) if g is None else g)
    return {n: torch.stack(g) for n, g in out.items()}


def dataset_tensors(dataset, indices: Optional[torch.Tensor] = None, batch_size: int = 4096):
    """(x, y, t) of a dataset's samples (or of ``indices`` of them), read as the training loaders read them."""
    if indices is not None:
        dataset = torch.utils.data.Subset(dataset, indices.tolist())
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         collate_fn=getattr(getattr(dataset, "dataset", dataset), "collate_fn", None),
                                         generator=torch.Generator())  # its own: the global random state stays
    parts = [(b[0], b[1], b[-1]) for b in loader]
    return tuple(torch.cat([torch.as_tensor(p[k]) for p in parts]) for k in range(3))


class MergedEWCPlugin(EWCPlugin):
    """EWC's penalty, ``(lambda / 2) sum_k F_k (theta - theta_k)^2``, with the per-experience terms
    merged into one quadratic and the Fisher estimated from per-sample gradients (or Avalanche's
    ``"batch"`` estimator); see the module docstring."""

    def __init__(self, ewc_lambda: float, mode: str = "separate", decay_factor: Optional[float] = None,
                 fisher: str = "predicted", fisher_samples: Optional[int] = None):
        super().__init__(ewc_lambda, mode, decay_factor)
        if fisher not in ESTIMATORS:
            raise ValueError(f"fisher must be one of {ESTIMATORS}, not {fisher!r}")
        self.fisher, self.fisher_samples = fisher, fisher_samples
        self.keep_importance_data = False  # nothing per experience is kept
        self.curvature: dict[str, torch.Tensor] = {}  # A
        self.anchor: dict[str, torch.Tensor] = {}  # mu
        self.offset = 0.0  # c, summed over parameters (float64 on the host: only the loss value uses it)
        self.fallback_warned = False

    @property
    def penalty_weight(self) -> float:
        """lambda / 2, times gamma in online mode (Schwarz et al.'s gamma F*)."""
        return self.ewc_lambda / 2 * (self.decay_factor if self.mode == "online" else 1.0)

    def penalty(self, model: torch.nn.Module) -> torch.Tensor | float:
        """sum over parameters of A (theta - mu)^2 + c (the loss adds ``penalty_weight`` times it);
        parameters added after the last experience do not count."""
        total = self.offset
        for name, p in model.named_parameters():
            if name in self.curvature:
                a, mu = self._state(name, p.shape)
                total = total + (a * (p - mu).pow(2)).sum()
        return total

    def _state(self, name: str, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, mu) of a parameter, zero-padded if it grew (e.g. a classifier with new units: A = 0 there)."""
        a = self.curvature[name]
        if a.shape != shape:
            self.curvature[name], self.anchor[name] = _grow(a, shape), _grow(self.anchor[name], shape)
        return self.curvature[name], self.anchor[name]

    def before_backward(self, strategy, **kwargs):
        if self.curvature:
            strategy.loss += self.penalty_weight * self.penalty(strategy.model)

    def after_training_exp(self, strategy, **kwargs):
        dataset = strategy.experience.dataset
        if self.fisher == "batch":
            fisher = self.compute_importances(strategy.model, strategy._criterion, strategy.optimizer, dataset,
                                              strategy.device, strategy.train_mb_size,
                                              num_workers=kwargs.get("num_workers", 0))
            fisher = {name: imp.data for name, imp in fisher.items()}
        else:
            seen = getattr(strategy._criterion, "seen", None)  # the harness's active_classes=seen loss
            fisher = self.sample_fisher(strategy.model, dataset, strategy.device,
                                        seed=strategy.experience.current_experience,
                                        classes=seen if isinstance(seen, torch.Tensor) and seen.any() else None)
        self.consolidate(strategy.model, fisher)

    def sample_fisher(self, model: torch.nn.Module, dataset, device, seed: int = 0,
                      classes: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """The per-sample Fisher of ``dataset`` (``fisher_samples`` of its samples, drawn with a generator
        seeded by torch's initial seed and ``seed``, without touching the global random state), the
        softmax over ``classes`` (see :func:`fisher_diagonal`)."""
        indices = None
        if self.fisher_samples is not None and self.fisher_samples < len(dataset):
            gen = torch.Generator().manual_seed((torch.initial_seed() + 7919 * seed) % 2**63)
            indices = torch.randperm(len(dataset), generator=gen)[: self.fisher_samples].sort().values
        x, y, t = (v.to(device) for v in dataset_tensors(dataset, indices))
        classes = None if classes is None else classes.to(device)
        try:
            return fisher_diagonal(model, x, y, t, estimator=self.fisher, classes=classes)
        except (RuntimeError, NotImplementedError) as error:  # an op vmap has no rule for, data-dependent flow, ...
            if isinstance(error, torch.OutOfMemoryError):
                raise
            if not self.fallback_warned:
                warnings.warn(f"EWC: torch.func.vmap could not compute per-sample gradients of this model "
                              f"({type(error).__name__}: {str(error).splitlines()[0]}); using one backward pass "
                              f"per sample (same Fisher, slower)")
                self.fallback_warned = True
            return fisher_diagonal(model, x, y, t, estimator=self.fisher, method="loop", classes=classes)

    @torch.no_grad()
    def consolidate(self, model: torch.nn.Module, fisher: dict[str, torch.Tensor]) -> None:
        """Add the current parameters with their Fisher information to the penalty."""
        for name, p in model.named_parameters():
            f, theta = fisher[name].to(p.dtype), p.detach()
            if name not in self.curvature:
                self.curvature[name], self.anchor[name] = f.clone(), theta.clone()
                continue
            a, mu = self._state(name, p.shape)
            if self.mode == "online":
                a_new, mu_new = self.decay_factor * a + f, theta.clone()
            else:  # merge A (theta - mu)^2 + F (theta - theta_t)^2 into A' (theta - mu')^2 + dc
                a_new = a + f
                safe = torch.where(a_new > 0, a_new, torch.ones_like(a_new))
                mu_new = torch.where(a_new > 0, (a * mu + f * theta) / safe, theta)
                self.offset += float((a * f / safe * (mu - theta).pow(2)).double().sum())
            self.curvature[name], self.anchor[name] = a_new, mu_new


def _grow(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    out = t.new_zeros(shape)
    out[tuple(slice(0, n) for n in t.shape)] = t
    return out


# Permuted-MNIST needs a far weaker penalty than Split-MNIST: every new permutation moves all first-layer
# weights that earlier ones rely on. Measured under the common protocol (1 epoch, Adam 1e-3, MLP 400-400,
# permuted_mnist domain-IL, seeds 0-2; naive 0.554 over seeds 0-4): ACC at lambda 10 / 30 / 100 / 1e3 / 1e4 /
# 1e5 / 1e6 = 0.879 / 0.893 / 0.879 / 0.759 / 0.470 / 0.332 / 0.300 (the last over seeds 0-4), online EWC
# (gamma 0.7) at 100 / 1e3 / 1e4 = 0.865 / 0.867 / 0.616 (seeds 0-1). Van de Ven & Tolias use 500 and 1000 there.
EWC_LAMBDA = PerStream(1e6, {"permuted_mnist/*": 30.0})
ONLINE_EWC_LAMBDA = PerStream(1e8, {"permuted_mnist/*": 1000.0})


@register_strategy("ewc", memory=Memory(networks=2), defaults={"ewc_lambda": EWC_LAMBDA},
                   description="Elastic Weight Consolidation: a Fisher penalty per experience, merged into one")
class EWC(SupervisedTemplate):
    """EWC (Kirkpatrick et al. 2017) with :class:`MergedEWCPlugin`: ``(ewc_lambda / 2) sum F (theta - theta*)^2``
    with a per-sample Fisher (``fisher``: predicted | empirical | expected | batch, over ``fisher_samples``
    samples, null: all). Default lambda 1e6: van de Ven & Tolias 2019's Split MNIST domain-IL value (their
    task-IL 1e7, class-IL 1e8; Permuted MNIST 500 / 500 / 1; ``forgetbench.strategies.ewc``'s docstring
    gives the source); on permuted_mnist 30 (:data:`EWC_LAMBDA`: 1e6 stops it learning new permutations)."""

    def __init__(self, *, ewc_lambda: NonNegative = 1e6, fisher: Estimator = "predicted",
                 fisher_samples: Optional[Positive] = None, plugins: Optional[list] = None, **kwargs):
        plugin = MergedEWCPlugin(ewc_lambda, "separate", fisher=fisher, fisher_samples=fisher_samples)
        super().__init__(plugins=[*(plugins or []), plugin], **kwargs)


@register_strategy("online_ewc", memory=Memory(networks=2), defaults={"ewc_lambda": ONLINE_EWC_LAMBDA},
                   description="online EWC: one running, decayed Fisher penalty")
class OnlineEWC(SupervisedTemplate):
    """Online EWC (Schwarz et al. 2018): ``(ewc_lambda / 2) decay_factor sum F* (theta - theta_t)^2`` with
    F* <- decay_factor F* + F. Defaults lambda 1e8, gamma 0.7: van de Ven & Tolias 2019's Split MNIST
    domain-IL values (task-IL 1e8 / 0.8, class-IL 1e9 / 0.8; Permuted MNIST task / domain / class-IL
    500 / 0.8, 1000 / 0.9, 5 / 1.0); on permuted_mnist lambda 1000 (:data:`ONLINE_EWC_LAMBDA`)."""

    def __init__(self, *, ewc_lambda: NonNegative = 1e8, decay_factor: Fraction = 0.7,
                 fisher: Estimator = "predicted", fisher_samples: Optional[Positive] = None,
                 plugins: Optional[list] = None, **kwargs):
        plugin = MergedEWCPlugin(ewc_lambda, "online", decay_factor, fisher=fisher, fisher_samples=fisher_samples)
        super().__init__(plugins=[*(plugins or []), plugin], **kwargs)
