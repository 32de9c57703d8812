"""
L-BFGS, with an Armijo backtracking line search that tries step sizes without backward passes.

L-BFGS treats all parameters as one flat vector x. It remembers the last `history_size` steps
s = x_new - x_old and gradient changes y = g_new - g_old, and turns the gradient into a
quasi-Newton direction with the two-loop recursion: no Hessian is ever stored, only those
2 * history_size vectors (for BigNet's LoRA adapters, 1.2M values each).

The closure follows torchzero's convention: it takes a `backward` flag.

    def closure(backward=True):
        loss = loss_fn(model(x), y)
        if backward:
            optimizer.zero_grad()
            loss.backward()
        return loss

    optimizer.step(closure)

The line search only needs losses, so it calls closure(backward=False), under torch.no_grad():
no backward pass, and no activations kept for one. It pays for a single closure(backward=True) at
the step size it accepts, for the gradient there.

With line_search=None the optimizer takes fixed steps, exactly as
torch.optim.LBFGS(line_search_fn=None) does, and a plain closure without arguments works too.
One difference: torch also stops after max_eval closure calls (by default max_iter * 5 // 4),
which ends its steps one iteration early when max_iter is 2 or 3; there is no such budget here.
"""

import torch

ARMIJO_C = 1e-4  # a step must achieve this fraction of the decrease the slope predicts
MAX_HALVINGS = 20  # down to a millionth of the first try: if even that fails, the loss won't go down along d
MIN_CURVATURE = 1e-10  # s·y must be positive (and not tiny) for the estimate to stay positive definite


class LBFGS(torch.optim.Optimizer):
    """
    lr: the step size tried first (fixed, without a line search). max_iter: iterations per step().
    history_size: how many (s, y) pairs to remember. tolerance_grad: stop once no gradient entry
    exceeds it. tolerance_change: stop once the loss or the parameters change less than this.
    line_search: "backtracking" or None (fixed steps).

    The state, in self.state[first parameter]: n_iter (iterations), func_evals (closure calls),
    the pairs (s_history, y_history, rho_history = 1 / s·y), hessian_scale, and last_grad and
    last_move, the gradient and step of the last iteration, from which the next pair is made.
    """

    def __init__(
        self, params, lr=1.0, max_iter=20, history_size=10, tolerance_grad=1e-7, tolerance_change=1e-9, line_search="backtracking"
    ):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if max_iter < 1 or history_size < 1:
            raise ValueError(f"max_iter and history_size must be at least 1, got {max_iter} and {history_size}")
        if line_search not in (None, "backtracking"):
            raise ValueError(f"line_search must be 'backtracking' or None, got {line_search!r}")
        defaults = dict(
            lr=lr,
            max_iter=max_iter,
            history_size=history_size,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            line_search=line_search,
        )
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS optimizes all parameters as one vector: it takes a single parameter group")
        self._params = self.param_groups[0]["params"]

    @torch.no_grad()
    def step(self, closure=None):
        """Up to max_iter L-BFGS iterations; returns the loss at the start, as torch.optim.LBFGS does."""
        if closure is None:
            raise ValueError(
                "LBFGS.step needs a closure that recomputes the loss: closure(backward=True) "
                "also runs loss.backward(), closure(backward=False) only returns the loss"
            )
        group = self.param_groups[0]
        state = self._global_state()

        first_loss = self._evaluate(closure, backward=True)
        loss = float(first_loss)
        grad = self._flat_grad()
        if grad.abs().max() <= group["tolerance_grad"]:
            return first_loss  # already at a stationary point

        for iteration in range(1, group["max_iter"] + 1):
            state["n_iter"] += 1
            # The previous step (maybe taken in the previous step() call) and what it did to the gradient.
            if state["last_move"] is not None:
                self._remember(state["last_move"], grad - state["last_grad"], group["history_size"])
            direction = self._direction(grad)
            state["last_grad"], state["last_move"] = grad, None  # no step from here yet

            # The very first direction is the raw gradient, whose size says nothing about a good step:
            # cap the first step so that it moves the parameters by at most lr in total (L1).
            step_size = group["lr"] * min(1.0, 1.0 / grad.abs().sum().item()) if state["n_iter"] == 1 else group["lr"]
            slope = grad.dot(direction).item()  # the loss's derivative along the direction
            if slope > -group["tolerance_change"]:
                break  # not (numerically) a descent direction: no step size would help

            if group["line_search"] is None:
                self._move(step_size, direction)
            else:
                step_size = self._backtrack(closure, loss, slope, step_size, direction)
                if step_size is None:
                    break  # the parameters are back where they were
            state["last_move"] = direction.mul(step_size)

            # Done, or barely moving: the next step() evaluates the gradient here anyway, so don't pay for it now.
            if iteration == group["max_iter"] or state["last_move"].abs().max() <= group["tolerance_change"]:
                break
            new_loss = float(self._evaluate(closure, backward=True))
            grad = self._flat_grad()
            if grad.abs().max() <= group["tolerance_grad"] or abs(new_loss - loss) < group["tolerance_change"]:
                break
            loss = new_loss
        return first_loss

    def _global_state(self) -> dict:
        # torch.optim keeps state per parameter, but L-BFGS's is global: it lives under the first
        # parameter, so state_dict() and load_state_dict() carry it (and cast it to its device).
        state = self.state[self._params[0]]
        defaults = dict(
            n_iter=0, func_evals=0, s_history=[], y_history=[], rho_history=[], hessian_scale=1.0, last_grad=None, last_move=None
        )
        for key, value in defaults.items():
            state.setdefault(key, value)
        return state

    def _evaluate(self, closure, backward: bool):
        self._global_state()["func_evals"] += 1
        if not backward:
            return closure(backward=False)  # still under step()'s no_grad: no graph is built
        with torch.enable_grad():
            # Without a line search, a plain closure() works too: torchzero's defaults to backward=True.
            return closure() if self.param_groups[0]["line_search"] is None else closure(backward=True)

    def _remember(self, s: torch.Tensor, y: torch.Tensor, history_size: int) -> None:
        state = self._global_state()
        sy = s.dot(y)
        # The inverse-Hessian estimate stays positive definite (its directions go downhill) only
        # with positive curvature s·y; a non-convex stretch, or noise, can make it zero or negative.
        if sy <= MIN_CURVATURE:
            return
        if len(state["s_history"]) == history_size:
            for key in ("s_history", "y_history", "rho_history"):
                state[key].pop(0)  # the oldest pair goes
        state["s_history"].append(s)
        state["y_history"].append(y)
        state["rho_history"].append(1.0 / sy)
        # The initial inverse Hessian: a multiple of the identity, sized from the newest pair, so that
        # the directions come out at roughly the right scale and lr=1 is a sensible first try.
        state["hessian_scale"] = sy / y.dot(y)

    def _direction(self, grad: torch.Tensor) -> torch.Tensor:
        """-H g, with H the L-BFGS inverse-Hessian estimate (the two-loop recursion)."""
        state = self._global_state()
        pairs = list(zip(state["s_history"], state["y_history"], state["rho_history"]))
        direction = grad.neg()
        alphas = []
        for s, y, rho in reversed(pairs):  # newest first
            alpha = s.dot(direction) * rho
            direction.add_(y, alpha=-alpha)
            alphas.append(alpha)
        direction.mul_(state["hessian_scale"])
        for (s, y, rho), alpha in zip(pairs, reversed(alphas)):  # oldest first
            beta = y.dot(direction) * rho
            direction.add_(s, alpha=alpha - beta)
        return direction

    def _backtrack(self, closure, loss: float, slope: float, step_size: float, direction: torch.Tensor) -> float | None:
        """
        Armijo backtracking: halve the step until loss(x + t d) <= loss(x) + c t slope. Leaves the
        parameters at the accepted point and returns t; returns None, parameters unchanged, if none passes.
        """
        start = [p.clone() for p in self._params]
        for _ in range(MAX_HALVINGS + 1):
            self._move(step_size, direction)
            # A NaN loss fails this test too, so a step into overflow gets halved like any other.
            if float(self._evaluate(closure, backward=False)) <= loss + ARMIJO_C * step_size * slope:
                return step_size
            for p, p_start in zip(self._params, start):
                p.copy_(p_start)
            step_size /= 2
        return None

    def _flat_grad(self) -> torch.Tensor:
        # A parameter the loss does not reach has no gradient: its entries are zero.
        return torch.cat([p.new_zeros(p.numel()) if p.grad is None else p.grad.reshape(-1) for p in self._params])

    def _move(self, step_size: float, direction: torch.Tensor) -> None:
        """x += step_size * direction, the flat direction cut back into the parameters' shapes."""
        offset = 0
        for p in self._params:
            p.add_(direction[offset : offset + p.numel()].view_as(p), alpha=step_size)
            offset += p.numel()
