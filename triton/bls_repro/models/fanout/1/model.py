"""Decoupled BLS, the way voice_answer used it: per request, two threads each stream three
decoupled BLS calls to echo_stream, and the request's own thread forwards what they get."""

import queue
import threading

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            threading.Thread(target=self._answer, args=(request,), daemon=True).start()
        return None

    def _pull(self, n, out):
        for _ in range(3):
            request = pb_utils.InferenceRequest(
                model_name="echo_stream",
                inputs=[pb_utils.Tensor("N", np.array([n], dtype=np.int32))],
                requested_output_names=["OUT", "TXT"],
            )
            for response in request.exec(decoupled=True):
                values = pb_utils.get_output_tensor_by_name(response, "OUT")
                if values is not None:
                    out.put(values.as_numpy())
                label = pb_utils.get_output_tensor_by_name(response, "TXT")
                if label is not None:
                    [x.decode() for x in label.as_numpy().reshape(-1)]
        out.put(None)

    def _answer(self, request):
        sender = request.get_response_sender()
        n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy()[0])
        out = queue.Queue()
        for _ in range(2):
            threading.Thread(target=self._pull, args=(n, out), daemon=True).start()
        finished = 0
        while finished < 2:
            item = out.get()
            if item is None:
                finished += 1
                continue
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", item)]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
