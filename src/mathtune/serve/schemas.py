"""Request and response bodies (they make the OpenAPI docs at /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TopicsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"questions": ["Find the limit of (1+1/n)^n as n approaches infinity."]}})
    questions: list[str] = Field(..., min_length=1, description="Math questions to classify.")


class TopicPrediction(BaseModel):
    label: str = Field(description="The label as in the training data (the Kaggle topic id).")
    label_id: int
    topic: str
    probability: float
    probabilities: dict[str, float] = Field(description="Every topic's probability.")
    unfamiliar: str | None = Field(None, description="Why the question is unlike those the model learned from (then its topic is a guess, however high its probability); null: it is like them, or the model keeps no reference to tell.")


class TopicsResponse(BaseModel):
    model: str
    predictions: list[TopicPrediction]


class MisconceptionItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question_text: str
    mc_answer: str
    student_explanation: str
    question_id: str | None = Field(None, description="The question's id; lets the model rank only that question's labels.")


class MisconceptionsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"items": [{
        "question_text": "What fraction of the shape is not shaded?", "mc_answer": "\\( \\frac{1}{3} \\)",
        "student_explanation": "3 of the 9 triangles are not shaded", "question_id": "31772"}]}})
    items: list[MisconceptionItem] = Field(..., min_length=1)


class RankedLabel(BaseModel):
    label: str
    score: float
    description: str = Field("", description="One line on the category and the misconception.")


class MisconceptionPrediction(BaseModel):
    top3: list[RankedLabel]
    submission: str = Field(description="The three labels space-separated, as in the competition's submission file.")


class MisconceptionsResponse(BaseModel):
    model: str
    predictions: list[MisconceptionPrediction]
    notes: list[str] = []


class ProductsRequest(BaseModel):
    # every field of the shipped recipes (products-rf / products-linear): a record missing one is a 422
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"records": [{
        "name": "Bosch 6.5 Kg Fully Automatic Front Loading Washing Machine", "ratings": "4.3", "no_of_ratings": "1,024",
        "discount_price": "₹26,190", "actual_price": "₹34,990"}]}})
    records: list[dict[str, Any]] = Field(..., min_length=1, description="Product records with the fields the model was trained on.")


class ProductPrediction(BaseModel):
    label: str
    probability: float
    probabilities: dict[str, float]


class ProductsResponse(BaseModel):
    model: str
    predictions: list[ProductPrediction]
