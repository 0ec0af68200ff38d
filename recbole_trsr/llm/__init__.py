"""The LLM layer shared by the summarizer and the recommender: loading, batched generation, yes/no scoring."""
