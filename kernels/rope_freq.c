/* rope_freq.c: RoPE inverse frequencies, Hugging Face convention incl. llama3 scaling. */
#include <math.h>

#include "kernels/kernels.h"

void al_rope_inv_freq(float *inv_freq, int head_dim, float theta, int llama3, float factor,
                      float low_freq_factor, float high_freq_factor, int original_max_pos)
{
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        /* HF: 1 / base ** (arange(0, dim, 2).float() / dim), in float32 */
        float expo = (float)(2 * i) / (float)head_dim;
        float f = (float)(1.0 / pow((double)theta, (double)expo));
        if (llama3) {
            double old_ctx = (double)original_max_pos;
            double low_wavelen = old_ctx / low_freq_factor;
            double high_wavelen = old_ctx / high_freq_factor;
            double wavelen = 2.0 * M_PI / (double)f;
            double scaled = wavelen > low_wavelen ? (double)f / factor : (double)f;
            if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
                double smooth = (old_ctx / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                scaled = (1.0 - smooth) * scaled / factor + smooth * scaled;
            }
            f = (float)scaled;
        }
        inv_freq[i] = f;
    }
}

void al_rope_table(float *cs, const int32_t *pos, int T, int head_dim, const float *inv_freq)
{
    int half = head_dim / 2;
    for (int t = 0; t < T; t++) {
        float *row = cs + (size_t)t * head_dim;
        for (int i = 0; i < half; i++) {
            float ang = (float)pos[t] * inv_freq[i];
            row[i] = (float)cos((double)ang);
            row[half + i] = (float)sin((double)ang);
        }
    }
}
