"""Class names of the datasets of the original Mask2Former model zoo, index = the model's class id.

Facts taken from the dataset definitions of detectron2 (``builtin_meta.py``) and of the original Mask2Former
repository (``mask2former/data/datasets/register_*.py``), in the order the released models predict them.
"""

from __future__ import annotations

LABELS: dict[str, tuple[str, ...]] = {
    # COCO panoptic: 80 thing + 53 stuff classes, in the order of detectron2's COCO_CATEGORIES
    "coco_panoptic": (
        "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
        "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
        "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
        "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
        "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
        "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
        "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
        "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
        "hair drier", "toothbrush", "banner", "blanket", "bridge", "cardboard", "counter", "curtain", "door-stuff",
        "floor-wood", "flower", "fruit", "gravel", "house", "light", "mirror-stuff", "net", "pillow", "platform",
        "playingfield", "railroad", "river", "road", "roof", "sand", "sea", "shelf", "snow", "stairs", "tent",
        "towel", "wall-brick", "wall-stone", "wall-tile", "wall-wood", "water-other", "window-blind", "window-other",
        "tree-merged", "fence-merged", "ceiling-merged", "sky-other-merged", "cabinet-merged", "table-merged",
        "floor-other-merged", "pavement-merged", "mountain-merged", "grass-merged", "dirt-merged", "paper-merged",
        "food-other-merged", "building-other-merged", "rock-merged", "wall-other-merged", "rug-merged",
    ),
    # COCO instance: the 80 thing classes
    "coco_instance": (
        "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
        "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
        "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
        "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
        "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
        "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
        "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
        "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
        "hair drier", "toothbrush",
    ),
    # ADE20K (SceneParsing, 150 classes), semantic and panoptic
    "ade20k": (
        "wall", "building", "sky", "floor", "tree", "ceiling", "road, route", "bed", "window", "grass", "cabinet",
        "sidewalk, pavement", "person", "earth, ground", "door", "table", "mountain, mount", "plant", "curtain",
        "chair", "car", "water", "painting, picture", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
        "armchair", "seat", "fence", "desk", "rock, stone", "wardrobe, closet, press", "lamp", "tub", "rail",
        "cushion", "base, pedestal, stand", "box", "column, pillar", "signboard, sign",
        "chest of drawers, chest, bureau, dresser", "counter", "sand", "sink", "skyscraper", "fireplace",
        "refrigerator, icebox", "grandstand, covered stand", "path", "stairs", "runway",
        "case, display case, showcase, vitrine", "pool table, billiard table, snooker table", "pillow",
        "screen door, screen", "stairway, staircase", "river", "bridge, span", "bookcase", "blind, screen",
        "coffee table", "toilet, can, commode, crapper, pot, potty, stool, throne", "flower", "book", "hill", "bench",
        "countertop", "stove", "palm, palm tree", "kitchen island", "computer", "swivel chair", "boat", "bar",
        "arcade machine", "hovel, hut, hutch, shack, shanty", "bus", "towel", "light", "truck", "tower", "chandelier",
        "awning, sunshade, sunblind", "street lamp", "booth", "tv", "plane", "dirt track", "clothes", "pole",
        "land, ground, soil", "bannister, banister, balustrade, balusters, handrail",
        "escalator, moving staircase, moving stairway", "ottoman, pouf, pouffe, puff, hassock", "bottle",
        "buffet, counter, sideboard", "poster, posting, placard, notice, bill, card", "stage", "van", "ship",
        "fountain", "conveyer belt, conveyor belt, conveyer, conveyor, transporter", "canopy",
        "washer, automatic washer, washing machine", "plaything, toy", "pool", "stool", "barrel, cask",
        "basket, handbasket", "falls", "tent", "bag", "minibike, motorbike", "cradle", "oven", "ball",
        "food, solid food", "step, stair", "tank, storage tank", "trade name", "microwave", "pot", "animal",
        "bicycle", "lake", "dishwasher", "screen", "blanket, cover", "sculpture", "hood, exhaust hood", "sconce",
        "vase", "traffic light", "tray", "trash can", "fan", "pier", "crt screen", "plate", "monitor",
        "bulletin board", "shower", "radiator", "glass, drinking glass", "clock", "flag",
    ),
    # ADE20K instance: 100 thing classes
    "ade20k_instance": (
        "bed", "windowpane", "cabinet", "person", "door", "table", "curtain", "chair", "car", "painting", "sofa",
        "shelf", "mirror", "armchair", "seat", "fence", "desk", "wardrobe", "lamp", "bathtub", "railing", "cushion",
        "box", "column", "signboard", "chest of drawers", "counter", "sink", "fireplace", "refrigerator", "stairs",
        "case", "pool table", "pillow", "screen door", "bookcase", "coffee table", "toilet", "flower", "book",
        "bench", "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat",
        "arcade machine", "bus", "towel", "light", "truck", "chandelier", "awning", "streetlight", "booth",
        "television receiver", "airplane", "apparel", "pole", "bannister", "ottoman", "bottle", "van", "ship",
        "fountain", "washer", "plaything", "stool", "barrel", "basket", "bag", "minibike", "oven", "ball", "food",
        "step", "trade name", "microwave", "pot", "animal", "bicycle", "dishwasher", "screen", "sculpture", "hood",
        "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "plate", "monitor", "bulletin board", "radiator",
        "glass", "clock", "flag",
    ),
    # Cityscapes semantic and panoptic: the 19 train ids
    "cityscapes": (
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
        "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
    ),
    # Cityscapes instance: the 8 thing classes
    "cityscapes_instance": (
        "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
    ),
    # Mapillary Vistas v1.2: 65 classes
    "mapillary_vistas": (
        "Bird", "Ground Animal", "Curb", "Fence", "Guard Rail", "Barrier", "Wall", "Bike Lane", "Crosswalk - Plain",
        "Curb Cut", "Parking", "Pedestrian Area", "Rail Track", "Road", "Service Lane", "Sidewalk", "Bridge",
        "Building", "Tunnel", "Person", "Bicyclist", "Motorcyclist", "Other Rider", "Lane Marking - Crosswalk",
        "Lane Marking - General", "Mountain", "Sand", "Sky", "Snow", "Terrain", "Vegetation", "Water", "Banner",
        "Bench", "Bike Rack", "Billboard", "Catch Basin", "CCTV Camera", "Fire Hydrant", "Junction Box", "Mailbox",
        "Manhole", "Phone Booth", "Pothole", "Street Light", "Pole", "Traffic Sign Frame", "Utility Pole",
        "Traffic Light", "Traffic Sign (Back)", "Traffic Sign (Front)", "Trash Can", "Bicycle", "Boat", "Bus", "Car",
        "Caravan", "Motorcycle", "On Rails", "Other Vehicle", "Trailer", "Truck", "Wheeled Slow", "Car Mount",
        "Ego Vehicle",
    ),
}
