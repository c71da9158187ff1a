/* rpc_pb.c: the nanopb side of the RPC layer: callback arrays, method table, status codes, frames. */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pb_common.h>
#include <pb_decode.h>
#include <pb_encode.h>

#include "common/ipc/rpc_int.h"
#include "common/util.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "rpc_pb.c writes packed floats and the frame header as little-endian memory"
#endif

/* ---- callback arrays ----------------------------------------------------------------------- */

enum { ALI_PB_I32 = 1, ALI_PB_F32 = 2, ALI_PB_BYTES = 3, ALI_PB_LAZY = 4 /* a decode's stand-in */ };

struct ali_pbnode {
    ali_pbnode *next;
    int kind;
    bool borrowed; /* data points at caller memory */
    uint32_t tag;
    size_t n, cap, max; /* elements (bytes for ALI_PB_BYTES) */
    void *data;
};

static size_t ali_kind_size(int kind) { return kind == ALI_PB_BYTES ? 1 : 4; }

void al_pbmem_free(al_pbmem *m)
{
    if (!m)
        return;
    ali_pbnode *nd = m->head;
    while (nd) {
        ali_pbnode *next = nd->next;
        if (!nd->borrowed)
            free(nd->data);
        free(nd);
        nd = next;
    }
    m->head = NULL;
}

static ali_pbnode *ali_node_new(al_pbmem *m, int kind, size_t max)
{
    ali_pbnode *nd = calloc(1, sizeof *nd);
    if (!nd)
        return NULL;
    nd->kind = kind;
    nd->max = max;
    nd->next = m->head;
    m->head = nd;
    return nd;
}

/* Grows an owned node to hold at least want elements (never past nd->max when max != 0). */
static bool ali_node_reserve(ali_pbnode *nd, size_t want)
{
    if (want <= nd->cap)
        return true;
    size_t cap = nd->cap ? nd->cap : 16;
    while (cap < want)
        cap *= 2;
    if (nd->max && cap > nd->max)
        cap = nd->max > want ? nd->max : want;
    void *p = realloc(nd->data, cap * ali_kind_size(nd->kind));
    if (!p)
        return false;
    nd->data = p;
    nd->cap = cap;
    return true;
}

static _Thread_local char ali_pb_errbuf[160];

/* A field present on the wire gets its node on its first decode callback: the field's arg points at
 * the decode's ALI_PB_LAZY stand-in (data = the al_pbmem, max = max_elems) until then. */
static ali_pbnode *ali_dec_node(void **arg, int kind, uint32_t tag)
{
    ali_pbnode *nd = *arg;
    if (nd->kind != ALI_PB_LAZY)
        return nd;
    ali_pbnode *n = ali_node_new(nd->data, kind, nd->max);
    if (n) {
        n->tag = tag;
        *arg = n;
    }
    return n;
}

static bool ali_dec_overflow(pb_istream_t *s, ali_pbnode *nd, uint32_t tag)
{
    snprintf(ali_pb_errbuf, sizeof ali_pb_errbuf, "field %u: more than %zu %s", (unsigned)tag,
             nd->max, nd->kind == ALI_PB_BYTES ? "bytes" : "elements");
    PB_RETURN_ERROR(s, ali_pb_errbuf);
}

/* Packed varints are read in chunks and parsed here (pb_decode_varint per element costs a
 * stream call per byte). A varint cut by a chunk boundary is carried into the next chunk. */
static bool ali_dec_i32(pb_istream_t *s, const pb_field_t *f, void **arg)
{
    ali_pbnode *nd = ali_dec_node(arg, ALI_PB_I32, f->tag);
    if (!nd)
        PB_RETURN_ERROR(s, "out of memory");
    /* A packed block of bytes_left bytes holds at most bytes_left varints. */
    size_t want = nd->n + s->bytes_left;
    if (nd->max && want > nd->max)
        want = nd->max;
    if (!ali_node_reserve(nd, want))
        PB_RETURN_ERROR(s, "out of memory");
    uint8_t buf[4096 + 10];
    size_t carry = 0;
    while (s->bytes_left || carry) {
        size_t k = s->bytes_left < 4096 ? s->bytes_left : 4096;
        if (k == 0)
            PB_RETURN_ERROR(s, "truncated varint");
        if (!pb_read(s, buf + carry, k))
            return false;
        size_t len = carry + k, i = 0;
        carry = 0;
        while (i < len) {
            uint64_t x = 0;
            size_t j = i;
            int shift = 0;
            for (;;) {
                if (j == len) { /* incomplete: carry it over */
                    if (len - i > 10)
                        PB_RETURN_ERROR(s, "varint overflow");
                    carry = len - i;
                    memmove(buf, buf + i, carry);
                    break;
                }
                uint8_t b = buf[j++];
                if (shift < 64)
                    x |= (uint64_t)(b & 0x7f) << shift;
                shift += 7;
                if (!(b & 0x80))
                    break;
                if (shift >= 70)
                    PB_RETURN_ERROR(s, "varint overflow");
            }
            if (carry)
                break;
            if (nd->max && nd->n >= nd->max)
                return ali_dec_overflow(s, nd, f->tag);
            if (nd->n >= nd->cap && !ali_node_reserve(nd, nd->n + 1))
                PB_RETURN_ERROR(s, "out of memory");
            ((int32_t *)nd->data)[nd->n++] = (int32_t)(uint32_t)x;
            i = j;
        }
        if (carry && s->bytes_left == 0)
            PB_RETURN_ERROR(s, "truncated varint");
    }
    return true;
}

static bool ali_dec_f32(pb_istream_t *s, const pb_field_t *f, void **arg)
{
    ali_pbnode *nd = ali_dec_node(arg, ALI_PB_F32, f->tag);
    if (!nd)
        PB_RETURN_ERROR(s, "out of memory");
    size_t k = s->bytes_left / 4;
    if (s->bytes_left % 4)
        PB_RETURN_ERROR(s, "packed float array: length not a multiple of 4");
    if (k == 0) /* an empty packed field: nothing to store (and no buffer yet) */
        return true;
    if (nd->max && nd->n + k > nd->max)
        return ali_dec_overflow(s, nd, f->tag);
    if (!ali_node_reserve(nd, nd->n + k))
        PB_RETURN_ERROR(s, "out of memory");
    if (!pb_read(s, (pb_byte_t *)((float *)nd->data + nd->n), k * 4))
        return false;
    nd->n += k;
    return true;
}

static bool ali_dec_bytes(pb_istream_t *s, const pb_field_t *f, void **arg)
{
    ali_pbnode *nd = ali_dec_node(arg, ALI_PB_BYTES, f->tag);
    if (!nd)
        PB_RETURN_ERROR(s, "out of memory");
    size_t k = s->bytes_left;
    if (nd->max && k > nd->max)
        return ali_dec_overflow(s, nd, f->tag);
    nd->n = 0; /* a repeated occurrence replaces (proto3 last-one-wins) */
    if (!ali_node_reserve(nd, k ? k : 1))
        PB_RETURN_ERROR(s, "out of memory");
    if (!pb_read(s, nd->data, k))
        return false;
    nd->n = k;
    return true;
}

static size_t ali_varint_len(uint64_t x)
{
    size_t n = 1;
    while (x >= 0x80) {
        x >>= 7;
        n++;
    }
    return n;
}

static bool ali_enc_i32(pb_ostream_t *s, const pb_field_t *f, void *const *arg)
{
    const ali_pbnode *nd = *arg;
    if (!nd || nd->n == 0)
        return true;
    const int32_t *v = nd->data;
    size_t len = 0;
    for (size_t i = 0; i < nd->n; i++)
        len += ali_varint_len((uint64_t)(int64_t)v[i]);
    if (!pb_encode_tag(s, PB_WT_STRING, f->tag) || !pb_encode_varint(s, len))
        return false;
    if (!s->callback) { /* sizing pass */
        s->bytes_written += len;
        return true;
    }
    uint8_t buf[4096 + 10];
    size_t pos = 0;
    for (size_t i = 0; i < nd->n; i++) {
        uint64_t x = (uint64_t)(int64_t)v[i];
        while (x >= 0x80) {
            buf[pos++] = (uint8_t)(x | 0x80);
            x >>= 7;
        }
        buf[pos++] = (uint8_t)x;
        if (pos >= 4096) {
            if (!pb_write(s, buf, pos))
                return false;
            pos = 0;
        }
    }
    return pos == 0 || pb_write(s, buf, pos);
}

static bool ali_enc_f32(pb_ostream_t *s, const pb_field_t *f, void *const *arg)
{
    const ali_pbnode *nd = *arg;
    if (!nd || nd->n == 0)
        return true;
    return pb_encode_tag(s, PB_WT_STRING, f->tag) && pb_encode_varint(s, nd->n * 4) &&
           pb_write(s, nd->data, nd->n * 4);
}

static bool ali_enc_bytes(pb_ostream_t *s, const pb_field_t *f, void *const *arg)
{
    const ali_pbnode *nd = *arg;
    if (!nd || nd->n == 0)
        return true;
    return pb_encode_tag_for_field(s, f) && pb_encode_string(s, nd->data, nd->n);
}

static const ali_pbnode *ali_node_of(const pb_callback_t *cb, int kind)
{
    const ali_pbnode *nd = cb ? cb->arg : NULL;
    if (!nd)
        return NULL;
    assert(nd->kind == kind && "callback field read as the wrong kind");
    return nd->kind == kind ? nd : NULL;
}

size_t al_pb_i32(const pb_callback_t *cb, const int32_t **v)
{
    const ali_pbnode *nd = ali_node_of(cb, ALI_PB_I32);
    *v = nd && nd->n ? nd->data : NULL;
    return nd ? nd->n : 0;
}

size_t al_pb_f32(const pb_callback_t *cb, const float **v)
{
    const ali_pbnode *nd = ali_node_of(cb, ALI_PB_F32);
    *v = nd && nd->n ? nd->data : NULL;
    return nd ? nd->n : 0;
}

size_t al_pb_bytes(const pb_callback_t *cb, const uint8_t **p)
{
    const ali_pbnode *nd = ali_node_of(cb, ALI_PB_BYTES);
    *p = nd && nd->n ? nd->data : NULL;
    return nd ? nd->n : 0;
}

/* The encode node of cb: reuses one this mem attached before, else attaches a new one. */
static ali_pbnode *ali_enc_node(pb_callback_t *cb, al_pbmem *m, int kind)
{
    ali_pbnode *nd = cb->arg;
    bool ours = false;
    for (ali_pbnode *it = m->head; nd && it; it = it->next)
        if (it == nd) {
            ours = true;
            break;
        }
    if (!ours) {
        nd = ali_node_new(m, kind, 0);
        if (!nd)
            return NULL;
    }
    assert(nd->kind == kind && "callback field set as two kinds");
    cb->arg = nd;
    cb->funcs.encode = kind == ALI_PB_I32 ? ali_enc_i32 : kind == ALI_PB_F32 ? ali_enc_f32 : ali_enc_bytes;
    return nd;
}

static al_err ali_set(pb_callback_t *cb, al_pbmem *m, int kind, const void *v, size_t n, bool ref)
{
    ali_pbnode *nd = ali_enc_node(cb, m, kind);
    if (!nd)
        return ali_errf(AL_ENOMEM, "rpc: out of memory");
    if (nd->borrowed) {
        nd->data = NULL;
        nd->cap = 0;
        nd->borrowed = false;
    }
    if (ref) {
        if (!nd->borrowed)
            free(nd->data);
        nd->data = (void *)v;
        nd->n = nd->cap = n;
        nd->borrowed = true;
        return AL_OK;
    }
    nd->n = 0;
    if (n && !ali_node_reserve(nd, n))
        return ali_errf(AL_ENOMEM, "rpc: out of memory (%zu elements)", n);
    if (n)
        memcpy(nd->data, v, n * ali_kind_size(kind));
    nd->n = n;
    return AL_OK;
}

static al_err ali_push(pb_callback_t *cb, al_pbmem *m, int kind, const void *v)
{
    ali_pbnode *nd = ali_enc_node(cb, m, kind);
    if (!nd)
        return ali_errf(AL_ENOMEM, "rpc: out of memory");
    if (nd->borrowed) { /* switch to an owned copy */
        void *old = nd->data;
        size_t n = nd->n;
        nd->data = NULL;
        nd->cap = 0;
        nd->borrowed = false;
        if (!ali_node_reserve(nd, n + 1))
            return ali_errf(AL_ENOMEM, "rpc: out of memory");
        if (n)
            memcpy(nd->data, old, n * ali_kind_size(kind));
    }
    if (!ali_node_reserve(nd, nd->n + 1))
        return ali_errf(AL_ENOMEM, "rpc: out of memory");
    memcpy((char *)nd->data + nd->n * ali_kind_size(kind), v, ali_kind_size(kind));
    nd->n++;
    return AL_OK;
}

al_err al_pb_set_i32(pb_callback_t *cb, al_pbmem *m, const int32_t *v, size_t n) { return ali_set(cb, m, ALI_PB_I32, v, n, false); }
al_err al_pb_ref_i32(pb_callback_t *cb, al_pbmem *m, const int32_t *v, size_t n) { return ali_set(cb, m, ALI_PB_I32, v, n, true); }
al_err al_pb_push_i32(pb_callback_t *cb, al_pbmem *m, int32_t v) { return ali_push(cb, m, ALI_PB_I32, &v); }
al_err al_pb_set_f32(pb_callback_t *cb, al_pbmem *m, const float *v, size_t n) { return ali_set(cb, m, ALI_PB_F32, v, n, false); }
al_err al_pb_ref_f32(pb_callback_t *cb, al_pbmem *m, const float *v, size_t n) { return ali_set(cb, m, ALI_PB_F32, v, n, true); }
al_err al_pb_push_f32(pb_callback_t *cb, al_pbmem *m, float v) { return ali_push(cb, m, ALI_PB_F32, &v); }
al_err al_pb_set_bytes(pb_callback_t *cb, al_pbmem *m, const void *p, size_t n) { return ali_set(cb, m, ALI_PB_BYTES, p, n, false); }
al_err al_pb_ref_bytes(pb_callback_t *cb, al_pbmem *m, const void *p, size_t n) { return ali_set(cb, m, ALI_PB_BYTES, p, n, true); }
al_err al_pb_set_str(pb_callback_t *cb, al_pbmem *m, const char *s) { return ali_set(cb, m, ALI_PB_BYTES, s, s ? strlen(s) : 0, false); }

/* Attaches an empty decode node to every callback field of msg (recursing into static
 * submessages). Unsupported callback shapes (repeated submessages/bytes) stay NULL = skipped. */
static bool ali_prepare_decode(const pb_msgdesc_t *d, void *msg, al_pbmem *m, size_t max_elems)
{
    pb_field_iter_t it;
    if (!pb_field_iter_begin(&it, d, msg))
        return true; /* no fields */
    do {
        pb_type_t t = it.type;
        if (PB_ATYPE(t) == PB_ATYPE_CALLBACK) {
            pb_callback_t *cb = it.pData;
            int kind = 0;
            bool rep = PB_HTYPE(t) == PB_HTYPE_REPEATED;
            if (rep && (PB_LTYPE(t) == PB_LTYPE_VARINT || PB_LTYPE(t) == PB_LTYPE_UVARINT ||
                        PB_LTYPE(t) == PB_LTYPE_SVARINT))
                kind = ALI_PB_I32;
            else if (rep && PB_LTYPE(t) == PB_LTYPE_FIXED32)
                kind = ALI_PB_F32;
            else if (!rep && (PB_LTYPE(t) == PB_LTYPE_BYTES || PB_LTYPE(t) == PB_LTYPE_STRING))
                kind = ALI_PB_BYTES;
            if (!kind)
                continue;
            ali_pbnode *nd = ali_node_new(m, kind, max_elems);
            if (!nd)
                return false;
            nd->tag = it.tag;
            cb->arg = nd;
            cb->funcs.decode = kind == ALI_PB_I32 ? ali_dec_i32 : kind == ALI_PB_F32 ? ali_dec_f32 : ali_dec_bytes;
        } else if (PB_ATYPE(t) == PB_ATYPE_STATIC && PB_LTYPE_IS_SUBMSG(t) && PB_HTYPE(t) != PB_HTYPE_ONEOF) {
            size_t count = PB_HTYPE(t) == PB_HTYPE_REPEATED ? it.array_size : 1;
            for (size_t i = 0; i < count; i++)
                if (!ali_prepare_decode(it.submsg_desc, (char *)it.pData + i * it.data_size, m, max_elems))
                    return false;
        }
    } while (pb_field_iter_next(&it));
    return true;
}

al_err ali_pb_size(const pb_msgdesc_t *d, const void *msg, size_t *len)
{
    if (!pb_get_encoded_size(len, d, msg))
        return ali_errf(AL_EINVAL, "rpc: message does not encode");
    return AL_OK;
}

al_err ali_pb_write(const pb_msgdesc_t *d, const void *msg, uint8_t *dst, size_t len)
{
    pb_ostream_t os = pb_ostream_from_buffer(dst, len);
    if (!pb_encode(&os, d, msg))
        return ali_errf(AL_EINVAL, "rpc: encode: %s", PB_GET_ERROR(&os));
    if (os.bytes_written != len)
        return ali_errf(AL_EINTERNAL, "rpc: encode wrote %zu bytes, sized %zu", os.bytes_written, len);
    return AL_OK;
}

al_err ali_pb_encode_small(const pb_msgdesc_t *d, const void *msg, const uint8_t **buf, size_t *len)
{
    static _Thread_local uint8_t scratch[8192];
    pb_ostream_t os = pb_ostream_from_buffer(scratch, sizeof scratch);
    if (!pb_encode(&os, d, msg))
        return AL_ECAPACITY; /* too big, or it does not encode: the sizing pass says which */
    *buf = scratch;
    *len = os.bytes_written;
    return AL_OK;
}

/* After a decode: every callback field's node also encodes (the same arg), so a decoded message,
 * or a submessage of it (e.g. a request's Sampling the router forwards), can be sent on as is. */
static void ali_arm_encode(const pb_msgdesc_t *d, void *msg)
{
    pb_field_iter_t it;
    if (!pb_field_iter_begin(&it, d, msg))
        return;
    do {
        pb_type_t t = it.type;
        if (PB_ATYPE(t) == PB_ATYPE_CALLBACK) {
            pb_callback_t *cb = it.pData;
            if (cb->funcs.decode == ali_dec_i32)
                cb->funcs.encode = ali_enc_i32;
            else if (cb->funcs.decode == ali_dec_f32)
                cb->funcs.encode = ali_enc_f32;
            else if (cb->funcs.decode == ali_dec_bytes)
                cb->funcs.encode = ali_enc_bytes;
        } else if (PB_ATYPE(t) == PB_ATYPE_STATIC && PB_LTYPE_IS_SUBMSG(t) && PB_HTYPE(t) != PB_HTYPE_ONEOF) {
            size_t count = PB_HTYPE(t) == PB_HTYPE_REPEATED ? it.array_size : 1;
            for (size_t i = 0; i < count; i++)
                ali_arm_encode(it.submsg_desc, (char *)it.pData + i * it.data_size);
        }
    } while (pb_field_iter_next(&it));
}

/* ---- decode plans: where a message type's callback fields are --------------------------------- */

/* A struct for nanopb's field iterator to point into when only a type's layout is wanted: the
 * pointers it computes are turned into offsets, never read or written through. */
static max_align_t ali_layout_scratch[256];

/* One callback field of a message type (static submessages flattened): its pb_callback_t's offset in
 * the top struct and the kind of array it decodes into. */
typedef struct ali_cbf {
    uint32_t off;
    int kind;
} ali_cbf;

typedef struct ali_plan {
    int n;
    ali_cbf f[]; /* [n] */
} ali_plan;

enum { ALI_PLAN_MAX_FIELDS = 1024, ALI_PLANS = 128 };

static int ali_cb_kind(pb_type_t t)
{
    bool rep = PB_HTYPE(t) == PB_HTYPE_REPEATED;
    if (rep && (PB_LTYPE(t) == PB_LTYPE_VARINT || PB_LTYPE(t) == PB_LTYPE_UVARINT || PB_LTYPE(t) == PB_LTYPE_SVARINT))
        return ALI_PB_I32;
    if (rep && PB_LTYPE(t) == PB_LTYPE_FIXED32)
        return ALI_PB_F32;
    if (!rep && (PB_LTYPE(t) == PB_LTYPE_BYTES || PB_LTYPE(t) == PB_LTYPE_STRING))
        return ALI_PB_BYTES;
    return 0; /* unsupported shape: left NULL (skipped), as ali_prepare_decode does */
}

/* Collects the callback fields of d laid out at base (the layout scratch: pointers only). false: too
 * many (the iterator path is used). */
static bool ali_plan_walk(const pb_msgdesc_t *d, char *base, char *top, ali_cbf *out, int *n, int depth)
{
    pb_field_iter_t it;
    if (depth > 16)
        return false;
    if (!pb_field_iter_begin(&it, d, base))
        return true;
    do {
        pb_type_t t = it.type;
        if (PB_ATYPE(t) == PB_ATYPE_CALLBACK) {
            int kind = ali_cb_kind(t);
            if (!kind)
                continue;
            if (*n >= ALI_PLAN_MAX_FIELDS)
                return false;
            out[(*n)++] = (ali_cbf){.off = (uint32_t)((char *)it.pData - top), .kind = kind};
        } else if (PB_ATYPE(t) == PB_ATYPE_STATIC && PB_LTYPE_IS_SUBMSG(t) && PB_HTYPE(t) != PB_HTYPE_ONEOF) {
            size_t count = PB_HTYPE(t) == PB_HTYPE_REPEATED ? it.array_size : 1;
            for (size_t i = 0; i < count; i++)
                if (!ali_plan_walk(it.submsg_desc, (char *)it.pData + i * it.data_size, top, out, n, depth + 1))
                    return false;
        }
    } while (pb_field_iter_next(&it));
    return true;
}

static struct {
    const pb_msgdesc_t *_Atomic d;
    const ali_plan *plan; /* NULL: no plan (the iterator path) */
} ali_plans[ALI_PLANS];
static pthread_mutex_t ali_plan_mu = PTHREAD_MUTEX_INITIALIZER;

/* The plan of d, made once per type and kept for the process's life (NULL: use the iterator). */
static const ali_plan *ali_plan_get(const pb_msgdesc_t *d)
{
    for (int i = 0; i < ALI_PLANS; i++) {
        const pb_msgdesc_t *c = atomic_load_explicit(&ali_plans[i].d, memory_order_acquire);
        if (c == d)
            return ali_plans[i].plan;
        if (!c)
            break;
    }
    const ali_plan *plan = NULL;
    pthread_mutex_lock(&ali_plan_mu);
    for (int i = 0; i < ALI_PLANS; i++) {
        const pb_msgdesc_t *c = atomic_load_explicit(&ali_plans[i].d, memory_order_relaxed);
        if (c == d) {
            plan = ali_plans[i].plan;
            break;
        }
        if (c)
            continue;
        ali_cbf *f = malloc(sizeof *f * ALI_PLAN_MAX_FIELDS);
        int n = 0;
        if (f && ali_plan_walk(d, (char *)ali_layout_scratch, (char *)ali_layout_scratch, f, &n, 0)) {
            ali_plan *p = malloc(sizeof *p + sizeof *f * (size_t)n);
            if (p) {
                p->n = n;
                memcpy(p->f, f, sizeof *f * (size_t)n);
                plan = p;
            }
        }
        free(f);
        if (plan) { /* a failed plan is not kept: the iterator path, and another try next time */
            ali_plans[i].plan = plan;
            atomic_store_explicit(&ali_plans[i].d, d, memory_order_release);
        }
        break;
    }
    pthread_mutex_unlock(&ali_plan_mu);
    return plan;
}

al_err ali_pb_read(const pb_msgdesc_t *d, const uint8_t *buf, size_t len, void *msg,
                   size_t struct_size, al_pbmem *m, size_t max_elems)
{
    memset(msg, 0, struct_size);
    const ali_plan *plan = ali_plan_get(d);
    if (plan) {
        /* every callback field points at one stand-in; a field on the wire gets its node when its
         * data comes (ali_dec_node); then the decoded ones are armed to encode, the absent ones
         * cleared (NULL: reads as empty, encodes nothing) */
        ali_pbnode lazy = {.kind = ALI_PB_LAZY, .data = m, .max = max_elems ? max_elems : AL_RPC_DEFAULT_MAX_ELEMS};
        for (int i = 0; i < plan->n; i++) {
            pb_callback_t *cb = (pb_callback_t *)((char *)msg + plan->f[i].off);
            int k = plan->f[i].kind;
            cb->arg = &lazy;
            cb->funcs.decode = k == ALI_PB_I32 ? ali_dec_i32 : k == ALI_PB_F32 ? ali_dec_f32 : ali_dec_bytes;
        }
        pb_istream_t is = pb_istream_from_buffer(buf, len);
        bool ok = pb_decode_ex(&is, d, msg, PB_DECODE_NOINIT);
        for (int i = 0; i < plan->n; i++) {
            pb_callback_t *cb = (pb_callback_t *)((char *)msg + plan->f[i].off);
            int k = plan->f[i].kind;
            if (cb->arg == &lazy) {
                cb->arg = NULL;
                cb->funcs.encode = NULL;
            } else {
                cb->funcs.encode = k == ALI_PB_I32 ? ali_enc_i32 : k == ALI_PB_F32 ? ali_enc_f32 : ali_enc_bytes;
            }
        }
        if (!ok)
            return ali_errf(AL_EINVAL, "%s", PB_GET_ERROR(&is));
        return AL_OK;
    }
    if (!ali_prepare_decode(d, msg, m, max_elems ? max_elems : AL_RPC_DEFAULT_MAX_ELEMS))
        return ali_errf(AL_ENOMEM, "rpc: out of memory");
    pb_istream_t is = pb_istream_from_buffer(buf, len);
    /* NOINIT: msg is zeroed (proto3 defaults) and must keep its callbacks. */
    if (!pb_decode_ex(&is, d, msg, PB_DECODE_NOINIT))
        return ali_errf(AL_EINVAL, "%s", PB_GET_ERROR(&is));
    ali_arm_encode(d, msg);
    return AL_OK;
}

/* Walks the wire form of a decoded message: a string field (static or callback, in submessages
 * too) that holds a NUL byte is an error naming its field number, so "name\0junk" is never read as
 * the C string "name". depth bounds the recursion (nanopb bounds the decode the same way). */
static al_err ali_nul_walk(const pb_msgdesc_t *d, void *msg, const uint8_t *buf, size_t len, const char *path,
                          int depth)
{
    pb_istream_t is = pb_istream_from_buffer(buf, len);
    while (is.bytes_left) {
        pb_wire_type_t wt;
        uint32_t tag;
        bool eof;
        if (!pb_decode_tag(&is, &wt, &tag, &eof))
            return eof ? AL_OK : ali_errf(AL_EINVAL, "%s: bad tag", path);
        pb_field_iter_t it;
        bool known = wt == PB_WT_STRING && pb_field_iter_begin(&it, d, msg) && pb_field_iter_find(&it, tag);
        if (!known) {
            if (!pb_skip_field(&is, wt))
                return ali_errf(AL_EINVAL, "%s: field %u: %s", path, tag, PB_GET_ERROR(&is));
            continue;
        }
        uint32_t n;
        if (!pb_decode_varint32(&is, &n) || n > is.bytes_left)
            return ali_errf(AL_EINVAL, "%s: field %u: bad length", path, tag);
        const uint8_t *p = (const uint8_t *)is.state;
        char sub[160];
        if (PB_LTYPE(it.type) == PB_LTYPE_STRING && memchr(p, 0, n))
            return ali_errf(AL_EINVAL, "%s: field %u: a string holds a NUL byte at offset %zu", path, tag,
                            (size_t)((const uint8_t *)memchr(p, 0, n) - p));
        if (PB_LTYPE_IS_SUBMSG(it.type) && PB_ATYPE(it.type) == PB_ATYPE_STATIC && it.submsg_desc && it.pData &&
            depth < 16) { /* it.pData: a struct of the submessage's type (only its layout is used) */
            snprintf(sub, sizeof sub, "%s.%u", path, tag);
            AL_TRY(ali_nul_walk(it.submsg_desc, it.pData, p, n, sub, depth + 1));
        }
        if (!pb_read(&is, NULL, n))
            return ali_errf(AL_EINVAL, "%s: field %u: truncated", path, tag);
    }
    return AL_OK;
}

/* Whether a message type has a string field, in it or in a static submessage (depth-bounded). */

static bool ali_desc_strings(const pb_msgdesc_t *d, int depth)
{
    pb_field_iter_t it;
    if (depth > 16 || !pb_field_iter_begin(&it, d, ali_layout_scratch))
        return depth > 16;
    do {
        if (PB_LTYPE(it.type) == PB_LTYPE_STRING)
            return true;
        if (PB_LTYPE_IS_SUBMSG(it.type) && PB_ATYPE(it.type) == PB_ATYPE_STATIC && it.submsg_desc &&
            ali_desc_strings(it.submsg_desc, depth + 1))
            return true;
    } while (pb_field_iter_next(&it));
    return false;
}

/* ali_desc_strings per message type, worked out once: a request of a type without strings (most
 * of the hot path's, e.g. WorkerInvokeRequest) is not walked again. */
enum { ALI_DESC_CACHE = 128 };
static struct {
    const pb_msgdesc_t *_Atomic d;
    bool strings;
} ali_desc_cache[ALI_DESC_CACHE];
static pthread_mutex_t ali_desc_mu = PTHREAD_MUTEX_INITIALIZER;

static bool ali_has_strings(const pb_msgdesc_t *d)
{
    for (int i = 0; i < ALI_DESC_CACHE; i++) {
        const pb_msgdesc_t *c = atomic_load_explicit(&ali_desc_cache[i].d, memory_order_acquire);
        if (c == d)
            return ali_desc_cache[i].strings;
        if (!c)
            break;
    }
    bool s = ali_desc_strings(d, 0);
    pthread_mutex_lock(&ali_desc_mu);
    for (int i = 0; i < ALI_DESC_CACHE; i++) {
        const pb_msgdesc_t *c = atomic_load_explicit(&ali_desc_cache[i].d, memory_order_relaxed);
        if (c == d)
            break;
        if (!c) {
            ali_desc_cache[i].strings = s;
            atomic_store_explicit(&ali_desc_cache[i].d, d, memory_order_release);
            break;
        }
    }
    pthread_mutex_unlock(&ali_desc_mu);
    return s;
}

al_err ali_pb_check_strings(const pb_msgdesc_t *d, void *msg, const uint8_t *buf, size_t len)
{
    if (!ali_has_strings(d))
        return AL_OK;
    return ali_nul_walk(d, msg, buf, len, "message", 0);
}

/* ---- methods ------------------------------------------------------------------------------ */

#define ALI_METHODS(X)                                                                       \
    X(BASE_ATTACH, "BaseAttach", AttachRequest, AttachReply, false)                          \
    X(BASE_HEALTH, "BaseHealth", Empty, HealthReply, true)                                   \
    X(BASE_STATS, "BaseStats", Empty, BaseStatsReply, true)                                  \
    X(BASE_SEQ_CREATE, "BaseSeqCreate", SeqCreateRequest, SeqCreateReply, false)             \
    X(BASE_SEQ_APPEND, "BaseSeqAppend", SeqAppendRequest, SeqAppendReply, false)             \
    X(BASE_SEQ_GENERATE, "BaseSeqGenerate", SeqGenerateRequest, SeqGenerateReply, false)     \
    X(BASE_SEQ_FORK, "BaseSeqFork", SeqForkRequest, SeqForkReply, false)                     \
    X(BASE_SEQ_RELEASE, "BaseSeqRelease", SeqReleaseRequest, Empty, false)                   \
    X(BASE_LEASE, "BaseLease", LeaseRequest, LeaseReply, false)                              \
    X(BASE_UNLEASE, "BaseUnlease", UnleaseRequest, Empty, false)                             \
    X(BASE_HELLO, "BaseHello", HelloRequest, HelloReply, false)                              \
    X(WORKER_INVOKE, "WorkerInvoke", WorkerInvokeRequest, WorkerInvokeReply, false)          \
    X(WORKER_HEALTH, "WorkerHealth", Empty, HealthReply, true)                               \
    X(WORKER_STATS, "WorkerStats", Empty, WorkerStatsReply, true)                            \
    X(ROUTER_REGISTER, "RouterRegister", RegisterRequest, RegisterReply, false)              \
    X(ROUTER_HEARTBEAT, "RouterHeartbeat", HeartbeatRequest, HeartbeatReply, true)           \
    X(ROUTER_DEREGISTER, "RouterDeregister", DeregisterRequest, Empty, false)                \
    X(ROUTER_SESSION_CREATE, "RouterSessionCreate", SessionCreateRequest, SessionCreateReply, false) \
    X(ROUTER_SESSION_APPEND, "RouterSessionAppend", SessionAppendRequest, SessionAppendReply, false) \
    X(ROUTER_SESSION_GENERATE, "RouterSessionGenerate", SessionGenerateRequest, SessionGenerateReply, false) \
    X(ROUTER_SESSION_DELETE, "RouterSessionDelete", SessionDeleteRequest, Empty, false)      \
    X(ROUTER_SESSION_INVOKE, "RouterSessionInvoke", SessionInvokeRequest, InvokeReply, false) \
    X(ROUTER_INVOKE, "RouterInvoke", InvokeRequest, InvokeReply, false)                      \
    X(ROUTER_STATUS, "RouterStatus", Empty, StatusReply, true)                               \
    X(ROUTER_HEALTH, "RouterHealth", Empty, HealthReply, true)                               \
    X(ROUTER_INTRINSICS, "RouterIntrinsics", Empty, IntrinsicsReply, true)

#define ALI_METHOD_ENTRY(id, nm, rq, rp, idem)                                                      \
    [alora_Method_##id] = {.name = nm, .req = &alora_##rq##_msg, .req_size = sizeof(alora_##rq),   \
                           .rep = &alora_##rp##_msg, .rep_size = sizeof(alora_##rp), .idempotent = idem},

static const ali_method ali_methods[ALI_RPC_MAX_METHOD] = {ALI_METHODS(ALI_METHOD_ENTRY)};

const ali_method *ali_rpc_method(uint16_t method)
{
    if (method >= ALI_RPC_MAX_METHOD || !ali_methods[method].name)
        return NULL;
    return &ali_methods[method];
}

const char *al_rpc_method_name(uint16_t method)
{
    const ali_method *m = ali_rpc_method(method);
    return m ? m->name : NULL;
}

bool al_rpc_method_idempotent(uint16_t method)
{
    const ali_method *m = ali_rpc_method(method);
    return m && m->idempotent;
}

/* ---- status codes ------------------------------------------------------------------------- */

#define ALI_SAME(e, s) _Static_assert((int)(e) == (int)(s), #e " != " #s);
ALI_SAME(AL_OK, alora_StatusCode_STATUS_OK)
ALI_SAME(AL_EINVAL, alora_StatusCode_STATUS_INVALID_ARGUMENT)
ALI_SAME(AL_ENOMEM, alora_StatusCode_STATUS_OUT_OF_MEMORY)
ALI_SAME(AL_EIO, alora_StatusCode_STATUS_IO_ERROR)
ALI_SAME(AL_EFORMAT, alora_StatusCode_STATUS_BAD_FORMAT)
ALI_SAME(AL_EUNSUPPORTED, alora_StatusCode_STATUS_UNSUPPORTED)
ALI_SAME(AL_ENOTFOUND, alora_StatusCode_STATUS_NOT_FOUND)
ALI_SAME(AL_ERANGE, alora_StatusCode_STATUS_OUT_OF_RANGE)
ALI_SAME(AL_ECAPACITY, alora_StatusCode_STATUS_CAPACITY_EXHAUSTED)
ALI_SAME(AL_EOVERLOADED, alora_StatusCode_STATUS_OVERLOADED)
ALI_SAME(AL_EUNAVAILABLE, alora_StatusCode_STATUS_UNAVAILABLE)
ALI_SAME(AL_ETIMEDOUT, alora_StatusCode_STATUS_TIMED_OUT)
ALI_SAME(AL_ECLOSED, alora_StatusCode_STATUS_CLOSED)
ALI_SAME(AL_EPROTO, alora_StatusCode_STATUS_PROTOCOL_ERROR)
ALI_SAME(AL_ENODEV, alora_StatusCode_STATUS_NO_DEVICE)
ALI_SAME(AL_EINTERNAL, alora_StatusCode_STATUS_INTERNAL)
_Static_assert(AL_ERR_COUNT == _alora_StatusCode_MAX + 1, "al_err and alora.StatusCode differ");

alora_StatusCode al_rpc_status_code(al_err e)
{
    if ((int)e < 0 || e >= AL_ERR_COUNT)
        return alora_StatusCode_STATUS_INTERNAL;
    return (alora_StatusCode)e;
}

al_err al_rpc_status_err(uint32_t code)
{
    if (code >= AL_ERR_COUNT)
        return AL_EPROTO;
    return (al_err)code;
}

/* ---- frames ------------------------------------------------------------------------------- */

static void ali_put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void ali_put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void ali_put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint16_t ali_get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t ali_get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t ali_get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

void al_rpc_hdr_write(uint8_t out[AL_RPC_HDR_SIZE], const al_rpc_hdr *h)
{
    ali_put32(out + 0, AL_RPC_MAGIC);
    out[4] = AL_RPC_VERSION;
    out[5] = h->flags;
    ali_put16(out + 6, h->method);
    ali_put64(out + 8, h->request_id);
    ali_put64(out + 16, h->trace_id);
    ali_put32(out + 24, h->payload_len);
    ali_put16(out + 28, h->status);
    ali_put16(out + 30, 0);
}

void ali_hdr_peek(const uint8_t *buf, size_t len, al_rpc_hdr *h)
{
    memset(h, 0, sizeof *h);
    if (len >= 8)
        h->method = ali_get16(buf + 6);
    if (len >= 16)
        h->request_id = ali_get64(buf + 8);
    if (len >= 24)
        h->trace_id = ali_get64(buf + 16);
}

al_err al_rpc_hdr_read(const uint8_t *buf, size_t len, al_rpc_hdr *h)
{
    memset(h, 0, sizeof *h);
    if (len < AL_RPC_HDR_SIZE)
        return ali_errf(AL_EPROTO, "frame truncated: %zu bytes, header needs %d", len, AL_RPC_HDR_SIZE);
    uint32_t magic = ali_get32(buf);
    if (magic != AL_RPC_MAGIC)
        return ali_errf(AL_EPROTO, "bad frame magic 0x%08x", magic);
    h->version = buf[4];
    h->flags = buf[5];
    h->method = ali_get16(buf + 6);
    h->request_id = ali_get64(buf + 8);
    h->trace_id = ali_get64(buf + 16);
    h->payload_len = ali_get32(buf + 24);
    h->status = ali_get16(buf + 28);
    if (h->version != AL_RPC_VERSION)
        return ali_errf(AL_EPROTO, "unsupported frame version %u (want %d)", h->version, AL_RPC_VERSION);
    if (h->flags & ~(AL_RPC_F_REPLY | AL_RPC_F_ERROR))
        return ali_errf(AL_EPROTO, "unknown frame flags 0x%02x", h->flags);
    if ((h->flags & AL_RPC_F_ERROR) && !(h->flags & AL_RPC_F_REPLY))
        return ali_errf(AL_EPROTO, "ERROR flag on a request frame");
    if (ali_get16(buf + 30) != 0)
        return ali_errf(AL_EPROTO, "reserved frame bits set");
    if ((uint64_t)h->payload_len != (uint64_t)(len - AL_RPC_HDR_SIZE))
        return ali_errf(AL_EPROTO, "frame length mismatch: header says %u payload bytes, got %zu",
                        h->payload_len, len - AL_RPC_HDR_SIZE);
    return AL_OK;
}

al_err ali_frame_desc(const al_rpc_hdr *h, const pb_msgdesc_t **d, size_t *struct_size)
{
    if (h->flags & AL_RPC_F_ERROR) {
        *d = &alora_Status_msg;
        *struct_size = sizeof(alora_Status);
        return AL_OK;
    }
    const ali_method *m = ali_rpc_method(h->method);
    if (!m)
        return ali_errf(AL_EUNSUPPORTED, "unknown method %u", h->method);
    bool reply = h->flags & AL_RPC_F_REPLY;
    *d = reply ? m->rep : m->req;
    *struct_size = reply ? m->rep_size : m->req_size;
    return AL_OK;
}

al_err al_rpc_frame_encode(const al_rpc_hdr *hin, const void *msg, uint8_t **out, size_t *out_len)
{
    const pb_msgdesc_t *d = NULL;
    size_t ssz = 0, plen = 0;
    al_rpc_hdr h = *hin;
    *out = NULL;
    *out_len = 0;
    AL_TRY(ali_frame_desc(&h, &d, &ssz));
    AL_TRY(ali_pb_size(d, msg, &plen));
    if (plen > UINT32_MAX)
        return ali_errf(AL_ERANGE, "rpc: payload of %zu bytes is too large", plen);
    uint8_t *buf = malloc(AL_RPC_HDR_SIZE + plen);
    if (!buf)
        return ali_errf(AL_ENOMEM, "rpc: out of memory (%zu bytes)", plen);
    h.payload_len = (uint32_t)plen;
    al_rpc_hdr_write(buf, &h);
    al_err e = ali_pb_write(d, msg, buf + AL_RPC_HDR_SIZE, plen);
    if (e) {
        free(buf);
        return e;
    }
    *out = buf;
    *out_len = AL_RPC_HDR_SIZE + plen;
    return AL_OK;
}

al_err al_rpc_frame_decode(const uint8_t *buf, size_t len, al_rpc_hdr *h, void *msg, al_pbmem *m,
                           size_t max_elems)
{
    const pb_msgdesc_t *d = NULL;
    size_t ssz = 0;
    AL_TRY(al_rpc_hdr_read(buf, len, h));
    AL_TRY(ali_frame_desc(h, &d, &ssz));
    al_err e = ali_pb_read(d, buf + AL_RPC_HDR_SIZE, h->payload_len, msg, ssz, m, max_elems);
    if (e)
        return ali_errctx(e, "bad %s %s payload", al_rpc_method_name(h->method),
                          h->flags & AL_RPC_F_ERROR ? "error" : h->flags & AL_RPC_F_REPLY ? "reply" : "request");
    return AL_OK;
}
