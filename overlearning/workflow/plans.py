"""What the evaluation and the anonymisation compute, as plain data (rules/evaluate.smk,
rules/anonymise.smk and the figure rules read it from here).

An *embedding set* is one set of images a trained model embeds (a VIS/OVIS test split
given by its crop index and crop pack, or a person set's pack). An *evaluation* is a query set searched in
one or more reference parts; each part may have an index-exclusion list. A *metrics job*
is one entry of ``scripts/compute_metrics.py``'s plan: one evaluation of one trained model
with exclusion on or off, or with an anonymised index.

Only paths and names are produced here; nothing is read from disk, so the plan of a run
is a pure function of the few config values below (the unit tests check it without a
workflow).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from overlearning.core.names import variant_name

# Image packs of a prepared person set (datasets rules): masked queries and gallery.
PACK = ".zip"
PERSON_QUERY_FOLDER = "foreground_query"
PERSON_GALLERY_FOLDER = "foregroundImages_cropped"
PERSON_QUERY_PACK = PERSON_QUERY_FOLDER + PACK
PERSON_GALLERY_PACK = PERSON_GALLERY_FOLDER + PACK
CROP_PACK = "foregroundImages_cropped" + PACK
NO_DELTA = "-"  # an embedding set read without an anonymised delta over it
# Query sets beside the query folder: one per partial-person probe, plus the clothes probe.
CLOTHES_PROBE = "clothes"
# A model's embedding sets, in two jobs: those read from the prepared data alone, and those
# a detection model cuts (the clothes probes: SegFormer, or GroundingDINO + SAM), so that a
# detection or segmentation edit re-embeds the few images it changed and nothing else.
DATA_SETS = "data"
DERIVED_SETS = "derived"
EMBED_GROUPS = (DATA_SETS, DERIVED_SETS)
NO_EXCLUSION = "-"  # a reference part without an exclusion list, in a plan entry


@dataclass
class EvaluationPlan:
    """The evaluation of every trained model: embedding sets, evaluations, metrics files.

    ``person_roots`` maps every person set to its prepared folder; ``person_sets`` are the
    evaluated ones; ``probes`` the partial-person probes (without the clothes probe);
    ``exclusion_sets`` the sets the detector runs on (they have exclusion lists);
    ``exclusion_modes`` the config's evaluation.exclusion ("none", "excluded").
    """

    data: str
    results: str
    person_roots: Mapping[str, str]
    person_sets: list[str]
    probes: list[str]
    vis_person_category: int
    ovis_person_category: int
    exclusion_sets: frozenset[str]
    exclusion_modes: list[str]
    embedding_sources: dict[str, dict[str, Any]] = field(init=False)
    embedding_groups: dict[str, str] = field(init=False)
    evaluations: dict[str, dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.exclusion_sets = frozenset(self.exclusion_sets)
        self.embedding_sources = self._embedding_sources()
        derived = {f"{person_set}_probe_{CLOTHES_PROBE}" for person_set in self.person_sets}
        self.embedding_groups = {name: DERIVED_SETS if name in derived else DATA_SETS
                                 for name in self.embedding_sources}
        self.evaluations = self._evaluations()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], person_roots: Mapping[str, str]) -> EvaluationPlan:
        prep = config["preparation"]
        return cls(
            data=config["paths"]["data"], results=config["paths"]["results"],
            person_roots=dict(person_roots),
            person_sets=list(config["evaluation"]["person_sets"]),
            probes=["torso", *prep["probes"]["occlusions"]],
            vis_person_category=prep["vis_person_category"],
            ovis_person_category=prep["ovis_person_category"],
            exclusion_sets=frozenset(config["detection"]["sets"]),
            exclusion_modes=list(config["evaluation"]["exclusion"]),
        )

    @property
    def query_probes(self) -> list[str]:
        """Every probe a person set is queried with (the clothes probe included)."""
        return [*self.probes, CLOTHES_PROBE]

    def _embedding_sources(self) -> dict[str, dict[str, Any]]:
        """Embedding set -> its images: a VIS/OVIS split (crop index + crop pack) or a pack."""
        sources: dict[str, dict[str, Any]] = {}
        for name, dataset, category in (("vis_test", "vis", self.vis_person_category),
                                        ("ovis_test", "ovis", self.ovis_person_category)):
            split = f"{self.data}/{dataset}/test"
            sources[name] = {
                "kind": "crops", "source": split,
                "images": f"{split}/{CROP_PACK}",
                "index": f"{split}/fg_instances_cropped.json", "category": category,
            }
        for person_set in self.person_sets:
            root = self.person_roots[person_set]
            packs = {"query": PERSON_QUERY_PACK, "gallery": PERSON_GALLERY_PACK}
            packs.update({f"probe_{p}": f"probes/{p}{PACK}" for p in self.query_probes})
            for part, pack in packs.items():
                sources[f"{person_set}_{part}"] = {
                    "kind": "pack", "source": f"{root}/{pack}", "images": f"{root}/{pack}",
                }
        return sources

    def _evaluations(self) -> dict[str, dict[str, Any]]:
        """Evaluation -> query (embedding set, subset) and reference parts (embedding set,
        subset, the exclusion set whose list removes items of that part, or None).

        OVIS distractors have no exclusion list: they are never put through detection.
        """
        evaluations: dict[str, dict[str, Any]] = {
            # Non-person retrieval: test non-persons find each other among OVIS distractors.
            "nonperson": {
                "query": ("vis_test", "nonpersons"),
                "references": [("vis_test", "nonpersons", "vis_test"), ("ovis_test", "all", None)],
                "reid": False,
            },
            # Person queries: test persons against all test crops (persons included) + OVIS.
            "person": {
                "query": ("vis_test", "persons"),
                "references": [("vis_test", "all", "vis_test"), ("ovis_test", "all", None)],
                "reid": False,
            },
        }
        for person_set in self.person_sets:
            # Person re-ID: masked queries (and partial-person probes) against the gallery.
            queries = [("query", person_set)] + [
                (f"probe_{p}", f"{person_set}_probe_{p}") for p in self.query_probes]
            for query, name in queries:
                evaluations[name] = {
                    "query": (f"{person_set}_{query}", "all"),
                    "references": [(f"{person_set}_gallery", "all", person_set)],
                    "reid": True,
                }
        return evaluations

    # -- paths

    def embedding_path(self, setting: str, embedding_set: str) -> str:
        return f"{self.results}/embeddings/{setting}/{embedding_set}.npz"

    def exclusion_json(self, exclusion_set: str) -> str:
        return f"{self.results}/exclusion/{exclusion_set}.json"

    def metrics_path(self, setting: str, evaluation: str, exclusion: str) -> str:
        return f"{self.results}/metrics/{setting}/{evaluation}/{exclusion}.json"

    def model_dir(self, setting: str) -> str:
        return f"{self.results}/models/{setting}"

    def model_files(self, setting: str) -> dict[str, str]:
        return {name: f"{self.model_dir(setting)}/{name}.safetensors"
                for name in ("trunk", "embedder")}

    # -- embedding

    def group_sets(self, group: str) -> list[str]:
        """The embedding sets of one embedding job of a model (DATA_SETS or DERIVED_SETS)."""
        if group not in EMBED_GROUPS:
            raise ValueError(f"embedding group {group!r} is none of {EMBED_GROUPS}")
        return [name for name, g in self.embedding_groups.items() if g == group]

    def embedding_files(self, setting: str, group: str) -> list[str]:
        """The .npz files one embedding job of a model writes."""
        return [self.embedding_path(setting, name) for name in self.group_sets(group)]

    def embed_sets(self, setting: str, group: str) -> list[tuple[str, str, str, int | None, str]]:
        """(npz to write, kind, source, person category, delta) per embedding set of one
        embedding job of a model."""
        sources = self.embedding_sources
        return [(self.embedding_path(setting, name), sources[name]["kind"],
                 sources[name]["source"], sources[name].get("category"), NO_DELTA)
                for name in self.group_sets(group)]

    def source_inputs(self, group: str) -> dict[str, list[str]]:
        """Every image pack and crop index that embedding a group's sets reads."""
        sources = [self.embedding_sources[name] for name in self.group_sets(group)]
        return {"images": sorted({s["images"] for s in sources}),
                "indexes": sorted({s["index"] for s in sources if "index" in s})}

    def embed_inputs(self, setting: str, group: str) -> dict[str, Any]:
        """The model and every image pack and crop index one embedding job reads."""
        return {**self.model_files(setting), **self.source_inputs(group)}

    # -- metrics

    def evaluation_available(self, evaluation: str, exclusion: str) -> bool:
        """Exclusion rows need every exclusion list of the evaluation to be produced."""
        needed = {e for _, _, e in self.evaluations[evaluation]["references"] if e}
        return exclusion == "none" or needed <= self.exclusion_sets

    def reference_parts(self, setting: str, evaluation: str,
                        exclusion: str) -> list[tuple[str, str, str | None]]:
        """(npz, subset, exclusion JSON or None) per reference part of an evaluation."""
        return [
            (self.embedding_path(setting, name), subset,
             self.exclusion_json(excl) if excl and exclusion == "excluded" else None)
            for name, subset, excl in self.evaluations[evaluation]["references"]
        ]

    def marking_lists(self, evaluation: str) -> list[str]:
        """Per reference part, the exclusion list that marks its items in the per-query
        evidence (also with exclusion off), or NO_EXCLUSION."""
        return [self.exclusion_json(excl) if excl and excl in self.exclusion_sets else NO_EXCLUSION
                for _, _, excl in self.evaluations[evaluation]["references"]]

    def metrics_job(self, setting: str, evaluation: str, exclusion: str) -> dict[str, Any]:
        """One entry of compute_metrics.py's plan."""
        spec = self.evaluations[evaluation]
        name, subset = spec["query"]
        parts = self.reference_parts(setting, evaluation, exclusion)
        return {
            "query": [self.embedding_path(setting, name), subset],
            "references": [[npz, sub, excl or NO_EXCLUSION, marked]
                           for (npz, sub, excl), marked
                           in zip(parts, self.marking_lists(evaluation), strict=True)],
            "reid": spec["reid"],
            "setting": setting, "evaluation": evaluation, "exclusion": exclusion,
            "out": self.metrics_path(setting, evaluation, exclusion),
        }

    def setting_metrics_jobs(self, setting: str) -> list[dict[str, Any]]:
        """Every evaluation of one model, exclusion off and on: one `metrics` job's plan."""
        return [self.metrics_job(setting, evaluation, exclusion)
                for exclusion in self.exclusion_modes
                for evaluation in self.evaluations
                if self.evaluation_available(evaluation, exclusion)]

    def metrics_files(self, settings: Iterable[str],
                      evaluations: Iterable[str] | None = None) -> list[str]:
        """Metrics files in table order: settings, then exclusion, then evaluations."""
        names = list(self.evaluations if evaluations is None else evaluations)
        return [self.metrics_path(setting, evaluation, exclusion)
                for setting in settings
                for exclusion in self.exclusion_modes
                for evaluation in names
                if self.evaluation_available(evaluation, exclusion)]


def plan_inputs(jobs: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Every embedding and exclusion file a metrics plan reads."""
    jobs = list(jobs)
    npz = {job["query"][0] for job in jobs} | {ref[0] for job in jobs for ref in job["references"]}
    excl = {path for job in jobs for ref in job["references"] for path in ref[2:]
            if path != NO_EXCLUSION}
    return {"embeddings": sorted(npz), "exclusions": sorted(excl)}


def provenance_files(jobs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The provenance record beside each metrics file of a plan."""
    return [job["out"].replace(".json", ".provenance.json") for job in jobs]


EVIDENCE_SUFFIX = ".queries.csv.gz"  # overlearning.evaluate.evidence.SUFFIX


def evidence_file(metrics_file: str) -> str:
    """The per-query evidence beside a metrics file."""
    return metrics_file.removesuffix(".json") + EVIDENCE_SUFFIX


def evidence_files(jobs: Iterable[Mapping[str, Any]]) -> list[str]:
    return [evidence_file(job["out"]) for job in jobs]



# The files of one anonymised set (safeguards/anonymise.py writes them).
ANON_DELTA = "changed.zip"
ANON_MANIFEST = "anonymised.json"
ANON_EXCLUSION = "exclusion.json"

# Which images an anonymisation policy desensitises (anonymise.py --selection):
#   detected (deployment): what the detector calls a person, i.e. what exclusion removes;
#   gt (oracle): every ground-truth person.
ANON_POLICIES = {"detected": "detected_persons", "gt": "gt_persons"}


@dataclass
class AnonymisationPlan:
    """Anonymised variants of the indexed sets, their embeddings and the extra table rows.

    A variant of a set stores only what it changes: ``changed.zip`` (the anonymised images,
    a delta pack read as an overlay on the set's own pack), ``anonymised.json`` (what was
    done) and ``exclusion.json`` (the images a detection-based index never holds; empty
    lists for the oracle policy).

    ``methods`` is the config's anonymisation.methods (method, strength) list.
    """

    evaluation: EvaluationPlan
    methods: list[Mapping[str, Any]]
    root: str = ""
    variants: list[str] = field(init=False)
    person_sets: list[str] = field(init=False)
    sources: dict[str, dict[str, Any]] = field(init=False)
    evaluations: list[str] = field(init=False)
    sets: list[str] = field(init=False)

    def __post_init__(self) -> None:
        ev = self.evaluation
        self.root = self.root or f"{ev.data}/anon"
        self.variants = [variant_name(m["method"], m["strength"]) for m in self.methods]
        self.person_sets = [ps for ps in ev.person_sets if ps in ev.evaluations]
        # Anonymised set -> what it is a copy of: the raw embedding set it replaces in the
        # index, the exclusion set whose verdicts the deployment policy follows, how to embed.
        self.sources = {}
        for policy in ANON_POLICIES:
            vis = ev.embedding_sources["vis_test"]
            self.sources[f"vis_test_{policy}"] = {
                "policy": policy, "raw": "vis_test", "detections": "vis_test", "kind": "crops",
                "base": vis["source"], "images": vis["images"],
                "category": ev.vis_person_category,
            }
            for person_set in self.person_sets:
                gallery = ev.embedding_sources[f"{person_set}_gallery"]
                self.sources[f"{person_set}_{policy}"] = {
                    "policy": policy, "raw": f"{person_set}_gallery", "detections": person_set,
                    "kind": "pack", "base": gallery["source"], "images": gallery["images"],
                    "category": None,
                }
        # The evaluations whose index can be anonymised: person and non-person retrieval on
        # the VIS test split, and each person set's queries against its gallery.
        self.evaluations = ["nonperson", "person", *self.person_sets]
        # Sets made for every variant (deployment sets only where the detector ran).
        self.sets = [name for name, s in self.sources.items()
                     if s["policy"] != "detected" or s["detections"] in ev.exclusion_sets]

    @classmethod
    def from_config(cls, config: Mapping[str, Any], evaluation: EvaluationPlan) -> AnonymisationPlan:
        return cls(evaluation, list(config["anonymisation"]["methods"]))

    def set_dir(self, variant: str, anon_set: str) -> str:
        return f"{self.root}/{variant}/{anon_set}"

    def set_files(self, variant: str, anon_set: str) -> dict[str, str]:
        """The files of one anonymised set: delta pack, manifest, exclusion lists."""
        folder = self.set_dir(variant, anon_set)
        return {"delta": f"{folder}/{ANON_DELTA}", "manifest": f"{folder}/{ANON_MANIFEST}",
                "exclusion": f"{folder}/{ANON_EXCLUSION}"}

    def embedding_path(self, setting: str, variant: str, anon_set: str) -> str:
        return f"{self.evaluation.results}/embeddings/{setting}/anon/{variant}/{anon_set}.npz"

    @staticmethod
    def row(policy: str, variant: str) -> str:
        """The table row label (the metrics file's "exclusion") of a policy and variant."""
        return f"anon_{policy}_{variant}"

    def set_dirs(self) -> list[str]:
        """Every anonymised image set's folder."""
        return [self.set_dir(v, name) for v in self.variants for name in self.sets]

    def all_set_files(self) -> list[str]:
        """Every file of every anonymised set."""
        return [f for v in self.variants for name in self.sets
                for f in self.set_files(v, name).values()]

    def embedding_files(self, setting: str) -> list[str]:
        return [self.embedding_path(setting, v, name) for v in self.variants for name in self.sets]

    def embed_sets(self, setting: str) -> list[tuple[str, str, str, int | None, str]]:
        """(npz, kind, source, category, delta) per anonymised set: the raw set (a VIS split
        or a gallery pack) read with the variant's changed images laid over it."""
        return [(self.embedding_path(setting, variant, name), self.sources[name]["kind"],
                 self.sources[name]["base"], self.sources[name]["category"],
                 self.set_files(variant, name)["delta"])
                for variant in self.variants for name in self.sets]

    def embed_inputs(self) -> list[str]:
        """The delta packs and the raw sets (packs, crop indexes) they overlay."""
        raw = set()
        for name in self.sets:
            source = self.evaluation.embedding_sources[self.sources[name]["raw"]]
            raw |= {source["images"], source.get("index", source["images"])}
        return sorted(raw) + [self.set_files(v, n)["delta"] for v in self.variants
                              for n in self.sets]

    def available(self, evaluation: str, policy: str) -> bool:
        """The deployment policy needs the detector's verdicts on every set it anonymises."""
        if policy != "detected":
            return True
        indexed = {name for name, _, _ in self.evaluation.evaluations[evaluation]["references"]}
        return all(s["detections"] in self.evaluation.exclusion_sets
                   for s in self.sources.values() if s["policy"] == policy and s["raw"] in indexed)

    def metrics_job(self, setting: str, evaluation: str, policy: str,
                    variant: str) -> dict[str, Any]:
        """One plan entry: the evaluation with the anonymisable reference sets swapped for
        their copies; a copy of the query set is marked so each query's copy counts as it."""
        ev = self.evaluation
        spec = ev.evaluations[evaluation]
        query_set, query_subset = spec["query"]
        by_raw = {s["raw"]: name for name, s in self.sources.items() if s["policy"] == policy}
        references, copies = [], []
        for name, subset, _ in spec["references"]:
            if name not in by_raw:  # OVIS distractors: never anonymised, never excluded
                references.append([ev.embedding_path(setting, name), subset, NO_EXCLUSION,
                                   NO_EXCLUSION])
                continue
            anon_set = by_raw[name]
            npz = self.embedding_path(setting, variant, anon_set)
            excl = (self.set_files(variant, anon_set)["exclusion"] if policy == "detected"
                    else NO_EXCLUSION)
            references.append([npz, subset, excl, excl])
            if name == query_set:
                copies.append(npz)
        row = self.row(policy, variant)
        return {
            "query": [ev.embedding_path(setting, query_set), query_subset],
            "references": references, "query_copies": copies, "reid": spec["reid"],
            "setting": setting, "evaluation": evaluation, "exclusion": row,
            "out": ev.metrics_path(setting, evaluation, row),
        }

    def setting_jobs(self, setting: str) -> list[dict[str, Any]]:
        """One `metrics_anonymised` job's plan: every variant, policy and evaluation."""
        return [self.metrics_job(setting, evaluation, policy, variant)
                for variant in self.variants
                for policy in ANON_POLICIES
                for evaluation in self.evaluations
                if self.available(evaluation, policy)]

    def plan_inputs(self, setting: str) -> dict[str, list[str]]:
        """What a setting's anonymised metrics read: embeddings and the deployment sets'
        exclusion lists."""
        return plan_inputs(self.setting_jobs(setting))

    def metrics_files(self, settings: Iterable[str]) -> list[str]:
        """Rows of the comparison table in order: per setting, no safeguard and index
        exclusion (the evaluation's files), then each variant's deployment and oracle rows."""
        ev = self.evaluation
        files: list[str] = []
        for setting in settings:
            files += ev.metrics_files([setting], self.evaluations)
            for variant in self.variants:
                for policy in ANON_POLICIES:
                    files += [ev.metrics_path(setting, e, self.row(policy, variant))
                              for e in self.evaluations if self.available(e, policy)]
        return files
