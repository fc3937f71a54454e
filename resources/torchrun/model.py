"""The Quadra Matrix model in PyTorch: the same maths as the workstation's engine.

OptimizedField (encoder/decoder with LayerNorm, exact GELU, dropout) and SpikingNetwork (three
leaky integrate-and-fire layers sharing a learnable threshold and decay, T steps, the output the
mean spike rate), with the engine's loss and its two AdamW optimisers. Module structure and
parameter registration follow the original project, so state_dict keys are the checkpoint's tensor
names once each network's prefix (`field_network.`, `spike_network.`) is added.

spike_gradient "surrogate": the spike's derivative is 1 / (1 + 25 |m - threshold|)^2 (the
workstation's default); "none": the hard threshold passes no gradient (the original project's
behaviour, in which the spiking network never learns).

The one PyTorch copy of the model: bench/pytorch-reference.py and tests/fixtures/pytorch/make_fixtures.py
import it from here, and the torchrun export ships it to users as it is, so it needs torch only.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class OptimizedField(nn.Module):
    def __init__(self, field_size, hidden_size, dropout):
        super().__init__()
        h = hidden_size
        self.encoder = nn.Sequential(
            nn.Linear(field_size, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(h, 2 * h), nn.LayerNorm(2 * h), nn.GELU())
        self.decoder = nn.Sequential(
            nn.Linear(2 * h, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(h, field_size))

    def forward(self, x):
        return self.decoder(self.encoder(x))


class SpikeFn(torch.autograd.Function):
    """Heaviside forward, fast-sigmoid-squared surrogate backward."""

    @staticmethod
    def forward(ctx, mem, threshold):
        ctx.save_for_backward(mem, threshold)
        return (mem > threshold).to(mem.dtype)

    @staticmethod
    def backward(ctx, grad):
        mem, threshold = ctx.saved_tensors
        g = grad / (1.0 + 25.0 * (mem - threshold).abs()) ** 2
        return g, -g.sum().reshape(threshold.shape)


class SpikingNetwork(nn.Module):
    def __init__(self, input_size, hidden_size, num_steps, spike_gradient):
        super().__init__()
        # Registered first, as in the original: parameters() and the optimizer list them before fc1-fc3.
        self.threshold = nn.Parameter(torch.tensor(1.0))
        self.decay = nn.Parameter(torch.tensor(0.95))
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.fc2 = nn.Linear(hidden_size, hidden_size)
        self.fc3 = nn.Linear(hidden_size, input_size)
        self.num_steps = num_steps
        self.spike_gradient = spike_gradient

    def spike(self, mem):
        if self.spike_gradient == "surrogate":
            return SpikeFn.apply(mem, self.threshold)
        return (mem > self.threshold).to(mem.dtype)

    def forward(self, x):
        batch = x.shape[0]
        # The membranes stay float32 under autocast: a spike decision is a comparison.
        mem1 = torch.zeros(batch, self.fc1.out_features, device=x.device)
        mem2 = torch.zeros(batch, self.fc2.out_features, device=x.device)
        mem3 = torch.zeros(batch, self.fc3.out_features, device=x.device)
        drive1 = self.fc1(x).float()  # x is the same every step, so fc1(x) once
        history = []
        for _ in range(self.num_steps):
            mem1 = mem1 + drive1
            spk1 = self.spike(mem1)
            mem1 = mem1 * (1 - spk1) * self.decay
            mem2 = mem2 + self.fc2(spk1).float()
            spk2 = self.spike(mem2)
            mem2 = mem2 * (1 - spk2) * self.decay
            mem3 = mem3 + self.fc3(spk2).float()
            spk3 = self.spike(mem3)
            mem3 = mem3 * (1 - spk3) * self.decay
            history.append(spk3)
        return torch.stack(history).mean(0)


class QuadraMatrix(nn.Module):
    """Both networks; forward gives (field output, spike rates)."""

    def __init__(self, model_config):
        super().__init__()
        m = model_config
        self.field_network = OptimizedField(m["fieldSize"], m["hiddenSize"], m.get("dropout", 0.1))
        self.spike_network = SpikingNetwork(m["fieldSize"], m["spikingHiddenSize"], m.get("spikingSteps", 10),
                                            m.get("spikeGradient", "surrogate"))
        self.spike_loss_weight = m.get("spikeLossWeight", 0.1)

    def forward(self, x):
        return self.field_network(x), self.spike_network(x)

    def loss(self, x):
        return engine_loss(*self(x), x, self.spike_loss_weight)


def engine_loss(field_out, spikes, x, spike_loss_weight):
    """(total, reconstruction, spike): MSE(field, x) + w * (unbiased var(spikes) + |mean(spikes) - 0.5|)."""
    reconstruction = F.mse_loss(field_out.float(), x)
    spike = torch.var(spikes) + torch.abs(spikes.mean() - 0.5)
    return reconstruction + spike_loss_weight * spike, reconstruction, spike


def make_optimizers(model, optimizer_config):
    """The engine's two AdamW optimisers (field, spiking), with decoupled weight decay."""
    o = optimizer_config
    settings = dict(lr=o.get("learningRate", 1e-3), betas=(o.get("beta1", 0.9), o.get("beta2", 0.999)),
                    eps=o.get("epsilon", 1e-8), weight_decay=o.get("weightDecay", 0.01))
    return (torch.optim.AdamW(model.field_network.parameters(), **settings),
            torch.optim.AdamW(model.spike_network.parameters(), **settings))
