"""What a sampling run is: the model (class and weights fingerprint), latent, sampler, cfg and
schedule it runs. Calibration samples carry it, the store is keyed by it, and a plan used on
another setup says so (adacache.summary.plan_mismatch)."""

from __future__ import annotations

import hashlib
import weakref

RUNS = "adacache_runs"  # transformer_options entry of a sampling call: {handle: its run}
VALUES_PER_TENSOR = 16  # weights read per parameter for the fingerprint
_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_fingerprint(diffusion_model) -> str:
    """A short hash of the model's class, parameter names and shapes, and a few values of
    every parameter: two fine-tunes (or two experts) of one architecture differ."""
    cached = _FINGERPRINTS.get(diffusion_model)
    if cached is not None:
        return cached
    digest = hashlib.sha1(type(diffusion_model).__name__.encode())
    for name, param in diffusion_model.named_parameters():
        digest.update(f"{name}{tuple(param.shape)}{param.dtype}".encode())
        try:
            values = param.detach().flatten()[:VALUES_PER_TENSOR].float().cpu().numpy()
            digest.update(values.tobytes())
        except Exception:  # quantised or meta tensors: their names and shapes only
            pass
    fingerprint = digest.hexdigest()[:12]
    _FINGERPRINTS[diffusion_model] = fingerprint
    return fingerprint


SETUP_FIELDS = ("latent", "sampler", "cfg")  # runs one plan is fitted from share these


def same_setup(a: dict | None, b: dict | None) -> bool:
    """Whether two runs' setups agree on SETUP_FIELDS (runs without a setup agree)."""
    a, b = a or {}, b or {}
    return all(a.get(k) == b.get(k) for k in SETUP_FIELDS)


def model_identity(model_patcher) -> dict:
    """The model class and a fingerprint of its weights and weight patches (LoRAs)."""
    diffusion_model = model_patcher.get_model_object("diffusion_model")
    patches = sorted(str(k) for k in getattr(model_patcher, "patches", {}) or {})
    extra = hashlib.sha1("|".join(patches).encode()).hexdigest()[:6] if patches else "-"
    return {"model": type(diffusion_model).__name__,
            "fingerprint": f"{model_fingerprint(diffusion_model)}-{extra}"}


def store_key(source) -> str | None:
    """The calibration store's key: of a setup dict, or of a (patched) ModelPatcher."""
    identity = source if isinstance(source, dict) else model_identity(source)
    if not identity.get("model") or not identity.get("fingerprint"):
        return None
    return f"{identity['model']}:{identity['fingerprint']}"


def run_setup(guider, outer_args, positions) -> dict:
    """What a sampling run is, from its OUTER_SAMPLE call (noise, latent, sampler, sigmas)."""
    noise, _latent, sampler, sigmas = (list(outer_args) + [None] * 4)[:4]
    function = getattr(sampler, "sampler_function", None)
    sampler_name = getattr(function, "__name__", None) or type(sampler).__name__
    cfg = getattr(guider, "cfg", None)
    return {
        **model_identity(guider.model_patcher),
        "latent": list(noise.shape[1:]) if hasattr(noise, "shape") else None,
        "sampler": sampler_name.removeprefix("sample_"),
        "cfg": float(cfg) if isinstance(cfg, (int, float)) else None,
        "steps": len(sigmas) - 1 if sigmas is not None else None,
        "sigmas": [round(float(s), 5) for s in sigmas] if sigmas is not None else None,
        "first_position": round(float(positions[0]), 5) if positions else None,
        "last_position": round(float(positions[-1]), 5) if positions else None,
    }


def prompt_id() -> str | None:
    try:
        from server import PromptServer

        return getattr(PromptServer.instance, "last_prompt_id", None)
    except Exception:
        return None


def continued_calibration(handle, sigmas, latent_shape):
    """The calibration carried from the previous slice of this schedule, if this run starts
    where that one ended (same prompt, same latent, its last sigma): else None (and drop it)."""
    carried, handle.calibration_carry = getattr(handle, "calibration_carry", None), None
    if carried is None:
        return None
    prompt, last_sigma, shape, carry, run_id = carried
    same_place = abs(float(sigmas[0]) - last_sigma) <= 1e-5 * max(abs(last_sigma), 1e-3)
    if prompt == prompt_id() and shape == latent_shape and same_place:
        return carry, run_id
    return None
