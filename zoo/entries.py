"""The zoo's entries: one declarative table, read by every zoo tool (no TensorFlow).

Each entry is a ``train.py`` call (its flags), an evaluation profile and a
one-line description; ``zoo/build.py`` trains, evaluates, exports and writes
the card of any entry from this table alone:

* profile ``"reference"``: the papers' protocol (clean, the reference noise
  settings, certified accuracy from the whole model's Lipschitz bound);
* profile ``"certified"``: certified L2 accuracy on the full test set at the
  dataset's radii (``CERTIFIED_RADII``), with a PGD-L2 falsification check.

``seed_cell`` entries (the nine Table 1 cells and the four NODE cells) ship the
seed chosen on validation data (``python zoo/build.py --from_seeds``).
``study_run`` names the run of the retired certified study whose weights an
entry still ships (its result: docs/results/certified/<study_run>.json); the
same recipe through train.py is the entry's flags.

Example:

>>> from zoo import entries
>>> entries.ENTRIES["chnode_mnist_n12"].flags["depth"]
12
>>> entries.train_flags("stable_node_certified_mnist_eps1_d256")
['--model=stable_node_certified', '--dataset=mnist', '--train_eps=1', '--dense=256']
"""

import dataclasses

#: The Hamiltonian family of Table 1 (the CH-NODE paper) and the NODE family.
HAMILTONIAN_MODELS = ("chnode", "hdnn", "resnet")
NODE_MODELS = ("node", "stable_node")
#: Titles of the models in tables, by train.py ``--model``.
TITLES = {"chnode": "CH-NODE", "hdnn": "H-DNN", "resnet": "ResNet-ODE", "node": "NODE",
          "stable_node": "stable NODE", "chnode_certified": "certified CH-NODE CNN",
          "stable_node_certified": "certified stable-NODE CNN"}
#: The family (ODE block) of each train.py ``--model``: what ``zoo.list_models`` filters on.
FAMILIES = {"chnode": "chnode", "hdnn": "hdnn", "resnet": "resnet", "node": "node",
            "stable_node": "stable_node", "chnode_certified": "chnode",
            "stable_node_certified": "stable_node"}
#: Table 1's depths N (the CH-NODE paper).
DEPTHS = (4, 8, 12)
DATASET_TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
#: L2 radii (on [0, 1] pixels) of the certified profile, per dataset.
CERTIFIED_RADII = {"mnist": (0.1, 0.25, 0.3, 0.5, 1.0, 1.58), "fashion_mnist": (0.1, 0.25, 0.5, 1.0)}
PROFILES = ("reference", "certified")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One zoo entry: what trains it (train.py flags) and how it is evaluated."""

    name: str
    flags: dict
    profile: str
    description: str
    seed_cell: bool = False
    study_run: str | None = None

    @property
    def model(self):
        return self.flags["model"]

    @property
    def dataset(self):
        return self.flags["dataset"]

    @property
    def family(self):
        return FAMILIES[self.model]

    @property
    def certified(self):
        """True for entries built to carry a whole-model certificate."""
        return self.profile == "certified" or self.name.endswith("_certified")


def _table():
    table = []
    for model in HAMILTONIAN_MODELS:
        for depth in DEPTHS:
            table.append(Entry(f"{model}_mnist_n{depth}", {"model": model, "depth": depth, "dataset": "mnist"},
                               "reference", f"{TITLES[model]}, {depth} Euler steps (h = 0.5), reference "
                               "MNIST recipe", seed_cell=True))
    for dataset, title in DATASET_TITLES.items():
        table.append(Entry(f"node_{dataset}", {"model": "node", "dataset": dataset}, "reference",
                           f"Neural ODE u' = sigma(A u + b), standard training, {title}", seed_cell=True))
        table.append(Entry(f"stable_node_{dataset}", {"model": "stable_node", "dataset": dataset},
                           "reference", f"Stabilized neural ODE (delta_bar constraint), {title}",
                           seed_cell=True))
    # Gamma held fixed with eps = 0.3 and L = 0.3 I keeps every Euler step of
    # h = 0.5 certified non-expansive; with norm bounds on the lift and the
    # read-out the whole model is certified (docs/reproduction.md, section 3).
    table.append(Entry(
        "chnode_mnist_n12_certified",
        {"model": "chnode", "depth": 12, "dataset": "mnist", "gamma": 2.0, "eps": 0.3, "L_scale": 0.3,
         "lift_max_norm": 1.0, "readout_max_norm": 3.0},
        "reference", "CH-NODE, 12 Euler steps (h = 0.5), gamma = 2 fixed, eps = 0.3, L = 0.3 I, "
        "norm-bounded lift and read-out: certified Lipschitz bound of the whole model"))
    table.append(Entry(
        "stable_node_mnist_certified",
        {"model": "stable_node", "dataset": "mnist", "lift_max_norm": 1.0, "readout_max_norm": 3.0},
        "reference", "Stabilized neural ODE (delta_bar = 0), norm-bounded lift and read-out: "
        "certified Lipschitz bound of the whole model, MNIST"))
    table.extend(_certified_entries())
    return {entry.name: entry for entry in table}


def _certified(name, model, dataset, train_eps, study_run, dense=None, temperature=None, note=""):
    flags = {"model": model, "dataset": dataset, "train_eps": train_eps}
    if dense is not None:
        flags["dense"] = dense
    if temperature is not None:
        flags["temperature"] = temperature
    block = ("CH-NODE (per pixel, gamma = 2 fixed, 4 Euler steps, non-expansive by construction)"
             if model == "chnode_certified" else
             "stabilized NODE (per pixel, delta_bar = 0 on its Euler map)")
    width = " and a 256-wide dense layer" if dense == 256 else ""
    tau = f" with softmax temperature {temperature:g}" if temperature is not None else ""
    description = (f"Certified {block} in a 1-Lipschitz CNN with orthonormal kernels{width}, trained "
                   f"against its certificate at L2 {train_eps:g}{tau}{note}, {DATASET_TITLES[dataset]}")
    return Entry(name, flags, "certified", description, study_run=study_run)


def _certified_entries():
    chnode, stable = "chnode_certified", "stable_node_certified"
    return [
        _certified("chnode_certified_mnist", chnode, "mnist", 1.58, "ortho_chnode_mnist_lmce158"),
        _certified("chnode_certified_mnist_eps1_d256", chnode, "mnist", 1.0, "ortho_chnode_mnist_lmce10_d256",
                   dense=256),
        _certified("chnode_certified_fashion_mnist", chnode, "fashion_mnist", 0.4, "ortho_chnode_fashion_lmce04"),
        _certified("stable_node_certified_mnist", stable, "mnist", 1.58, None),
        _certified("stable_node_certified_mnist_eps1_d256", stable, "mnist", 1.0,
                   "ortho_stableconv_mnist_lmce10_d256", dense=256),
        _certified("stable_node_certified_mnist_eps0p3_d256", stable, "mnist", 0.3,
                   "ortho_stableconv_mnist_lmce03_d256", dense=256,
                   note=" (the training radius chosen on a validation split)"),
        _certified("stable_node_certified_mnist_eps0p1_t0p1_d256", stable, "mnist", 0.1,
                   "ortho_stableconv_mnist_lmce01_T01_d256", dense=256, temperature=0.1),
        _certified("stable_node_certified_fashion_mnist", stable, "fashion_mnist", 0.5,
                   "ortho_stableconv_fashion_lmce05"),
        _certified("stable_node_certified_fashion_mnist_eps0p45_d256", stable, "fashion_mnist", 0.45,
                   "ortho_stableconv_fashion_lmce045_d256", dense=256),
        _certified("stable_node_certified_fashion_mnist_eps0p06_t0p1_d256", stable, "fashion_mnist", 0.06,
                   "ortho_stableconv_fashion_lmce006_T01_d256", dense=256, temperature=0.1,
                   note=" (the training radius chosen on a validation split)"),
    ]


#: name -> Entry, in the order the tools list them.
ENTRIES = _table()
#: The seed cells (zoo/seeds.py's five-seed study), cell -> model: Table 1's
#: nine by depth, then the four NODE cells by dataset.
SEED_CELLS = {
    **{f"{m}_mnist_n{n}": m for n in DEPTHS for m in HAMILTONIAN_MODELS},
    **{f"{m}_{d}": m for d in DATASET_TITLES for m in NODE_MODELS},
}
assert set(SEED_CELLS) == {n for n, e in ENTRIES.items() if e.seed_cell}
#: Certified entries retired because another entry of the same family and
#: dataset is at least as good at every radius (``superseded``); their results
#: stay in docs/results/certified/<study run>.json.
RETIRED = {"stable_node_certified_mnist_eps0p8": "stable_node_certified_mnist_eps1_d256",
           "stable_node_certified_fashion_mnist_eps0p05_t0p1_d256":
               "stable_node_certified_fashion_mnist_eps0p06_t0p1_d256"}


def train_flags(name):
    """The entry's train.py flags, in table order (``--key=value``)."""
    return [f"--{key}={value:g}" if isinstance(value, float) else f"--{key}={value}"
            for key, value in ENTRIES[name].flags.items()]
